"""A second process that links a large run's chunks against master while this one plans.

`process` of a county spends about two fifths of its time linking and the rest reading, planning
and writing in Python, which one interpreter runs on one core at a time (threads were tried for
promote and were slower). The linking process holds every person's features itself (read from the
store, refreshed from the change feed before each chunk, as `FeatureCache` does in process) and
links chunk N+1 while the caller plans chunk N.

It runs as a `SecondProcess` (govdb.base.second_process): an isolated interpreter spoken to in
pickles over pipes, which exits when its input closes.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable
from typing import Any

import polars as pl
from sqlalchemy import Engine

from govdb.base import second_process
from govdb.base.second_process import SecondProcess, sendable, wanted
from govdb.errors import GovdbError
from govdb.link.model import LinkModel
from govdb.rulebook.models import MatchingRules
from govdb.store.engine import in_process_memory

# How long the caller waits for a linking process that answers nothing before it takes it as hung
# and stops it: a chunk of 50,000 events against a million people links in under two minutes
# even on a loaded machine. GOVDB_LINK_TIMEOUT (seconds) sets it.
SILENCE_SECONDS = 1800.0


def silence_limit() -> float:
    """The seconds a linking process may answer nothing (GOVDB_LINK_TIMEOUT, else SILENCE_SECONDS)."""
    return second_process.silence_limit("GOVDB_LINK_TIMEOUT", SILENCE_SECONDS, "a linking process")


class LinkWorkerError(GovdbError):
    """The linking process of a large `process` run stopped or failed; what was written is kept."""


def _stopped(detail: str) -> LinkWorkerError:
    return LinkWorkerError(
        f"the linking process of this run {detail}; every chunk written before it is kept: "
        "run `govdb process` again to finish (GOVDB_LINK_PROCESS=0 links in one process)"
    )


class LinkWorker(SecondProcess):
    """Chunks linked in a second process, in the order submitted (`submit`, then `collect`)."""

    def __init__(self, master: Engine, rules: MatchingRules, address_hint: str | None) -> None:
        super().__init__("govdb.link.worker", _stopped, silence_limit, "GOVDB_LINK_TIMEOUT")
        self._outstanding = 0
        self._linked: collections.deque[tuple[pl.DataFrame, pl.DataFrame | None]] = collections.deque()
        self._model: LinkModel | None = None
        self._model_asked = False
        # The URL (a password in it) goes through the pipe, never on the command line.
        self._start(("start", master.url.render_as_string(hide_password=False), rules, address_hint))

    @staticmethod
    def wanted() -> bool:
        """Unless the deployment says `GOVDB_LINK_PROCESS=0` (a host that cannot start one)."""
        return wanted("GOVDB_LINK_PROCESS")

    @staticmethod
    def can_open(master: Engine) -> bool:
        """Whether a second process can open this store: not one in this process's memory."""
        return not in_process_memory(master)

    def use_model(self, model: LinkModel) -> None:
        self._send(("use", model))
        self._model = model

    def build_model(self) -> None:
        """Have the linking process take the stored model, else build the default one from the
        features it holds (as `GovDB.linkage_model` does), when a chunk first has candidates: this
        process need not read everyone's features too, and a master of nobody needs no model."""
        self._send(("build",))
        self._model_asked = True

    def model(self) -> LinkModel:
        """The model the chunks are linked with (asks the linking process for the one it builds)."""
        if self._model is None:
            if not self._model_asked:
                raise GovdbError("the linking process was given no model")
            self._send(("model?",))
            self._model = self._reply("model")
        return self._model

    def submit(self, records: pl.DataFrame) -> None:
        """Link these records (`event_records`) against master as it is when the linking starts."""
        self._send(("link", records))
        self._outstanding += 1

    def collect(self) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """The oldest chunk submitted and not collected, as `linked_frames` gives it: its links and
        the chosen people's master rows (`link_results` makes them results; `process` plans from
        the frames as they are)."""
        if self._outstanding == 0:
            raise GovdbError("nothing was submitted to the linking process")
        self._outstanding -= 1
        links, people = self._linked.popleft() if self._linked else self._reply("linked")
        return links, people

    def _reply(self, expected: str) -> Any:
        """The next reply, of kind `expected`; chunks linked meanwhile are kept for `collect`."""
        while (reply := self._next())[0] == "linked" and expected != "linked":
            self._linked.append((reply[1], reply[2]))
        return self._expect(reply, expected)


def child_command() -> list[str]:
    """How the linking process is started (`second_process.child_command`)."""
    return second_process.child_command("govdb.link.worker")


def _serve(requests: queue.Queue[Any], reply: Callable[[tuple[Any, ...]], None]) -> None:
    """The linking process: start (engine, everyone's features), then link chunks until input ends."""
    from govdb.link.online import linked_frames
    from govdb.link.reads import FeatureCache
    from govdb.link.stored import default_model, stored_model
    from govdb.store.engine import make_engine, store_errors

    engine = None
    cache = FeatureCache()
    rules: MatchingRules | None = None
    hint: str | None = None
    model: LinkModel | None = None
    # The caller asked for the stored or default model, built when a chunk first needs it: after
    # the caller's validation and the features' refresh, from master as it is then (built at once,
    # it missed what a load or promote changed during validation, and linked differently).
    build = False

    def current() -> LinkModel:
        nonlocal model
        if model is None:
            if engine is None or rules is None or not build:
                raise GovdbError("the linking process was asked to link before it was given a model")
            with store_errors(engine):  # the stored model, else the default one from the features held
                model = stored_model(engine) or default_model(
                    engine, rules, address_hint=hint, features=cache.all() if cache.everyone else None
                )
        return model

    while (message := requests.get()) is not None:
        kind, *rest = message
        try:
            if kind == "start":
                url, rules, hint = rest
                engine = make_engine(url)
                with store_errors(engine), engine.connect() as conn:
                    cache.load_everyone(conn)
            elif kind == "error":  # what the caller sent could not be read here: say why
                raise rest[0]
            elif kind == "use":
                (model,) = rest
            elif kind == "build":
                build = True
            elif kind == "model?":
                reply(("model", current()))
            elif kind == "link":
                if engine is None or rules is None:
                    raise GovdbError("the linking process was asked to link before it was started")
                with store_errors(engine), engine.connect() as conn:
                    cache.refresh(conn)  # people master changed meanwhile (a concurrent promote)
                    links, people = linked_frames(
                        conn,
                        rest[0],
                        rules,
                        model if model is not None else current,
                        address_hint=hint,
                        features=cache if cache.everyone else None,
                    )
                reply(("linked", links, people))
        except Exception as exc:  # handed to the caller, which raises it
            reply(("error", sendable(exc, _stopped)))
            return  # the caller stops at this error; nothing after it is wanted


def main() -> None:
    second_process.child_main(_serve, _stopped)


if __name__ == "__main__":  # `python -m govdb.link.worker`: the module's own classes, not __main__'s
    from govdb.link import worker

    worker.main()
