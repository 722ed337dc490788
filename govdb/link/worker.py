"""A second process that links a large run's chunks against master while this one plans.

`process` of a county spends about two fifths of its time linking and the rest reading, planning
and writing in Python, which one interpreter runs on one core at a time (threads were tried for
promote and were slower). The linking process holds every person's features itself (read from the
store, refreshed from the change feed before each chunk, as `FeatureCache` does in process) and
links chunk N+1 while the caller plans chunk N.

It is started with pipes as an isolated interpreter given this process's module path
(`child_command`), not through multiprocessing: a spawned multiprocessing child imports the
caller's main script again, and a script without a `__main__` guard would run its work twice.
Messages are pickles between the two processes of one run, never read from anywhere else. The
linking process exits when its input closes (the caller stopped, however it stopped), and
ignores the terminal's Ctrl-C, which the caller handles.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Self

import polars as pl
from sqlalchemy import Engine

from govdb.errors import ConfigError, GovdbError, StoreError
from govdb.link.model import LinkModel
from govdb.rulebook.models import MatchingRules
from govdb.store.engine import in_process_memory

STDERR_KEPT = 4000  # characters of the linking process's own error output kept for a message
# How long the caller waits for a linking process that answers nothing before it takes it as hung
# and stops it: a chunk of 50,000 events against a million people links in under two minutes
# even on a loaded machine. GOVDB_LINK_TIMEOUT (seconds) sets it.
SILENCE_SECONDS = 1800.0


def silence_limit() -> float:
    """The seconds a linking process may answer nothing (GOVDB_LINK_TIMEOUT, else SILENCE_SECONDS)."""
    said = os.environ.get("GOVDB_LINK_TIMEOUT", "").strip()
    if not said:
        return SILENCE_SECONDS
    try:
        seconds = float(said)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(
            f"GOVDB_LINK_TIMEOUT={said[:40]!r} is not a number of seconds; set it to how long a "
            f"linking process may answer nothing, e.g. {SILENCE_SECONDS:.0f}, or unset it"
        )
    return seconds


class LinkWorkerError(GovdbError):
    """The linking process of a large `process` run stopped or failed; what was written is kept."""


def _stopped(detail: str) -> LinkWorkerError:
    return LinkWorkerError(
        f"the linking process of this run {detail}; every chunk written before it is kept: "
        "run `govdb process` again to finish (GOVDB_LINK_PROCESS=0 links in one process)"
    )


class LinkWorker:
    """Chunks linked in a second process, in the order submitted (`submit`, then `collect`)."""

    def __init__(self, master: Engine, rules: MatchingRules, address_hint: str | None) -> None:
        try:
            self._child = subprocess.Popen(
                child_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (OSError, ValueError) as exc:  # no such interpreter, no processes left, ...
            raise LinkWorkerError(
                f"the linking process of this run could not be started ({type(exc).__name__}: {exc}); "
                "GOVDB_LINK_PROCESS=0 links in one process"
            ) from None
        assert self._child.stdin and self._child.stdout and self._child.stderr
        self._replies: queue.Queue[Any] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._outstanding = 0
        self._linked: collections.deque[tuple[pl.DataFrame, pl.DataFrame | None]] = collections.deque()
        self._model: LinkModel | None = None
        self._model_asked = False
        threading.Thread(
            target=_read_pickles, args=(self._child.stdout, self._replies.put), daemon=True
        ).start()
        threading.Thread(
            target=_read_lines, args=(self._child.stderr, self._stderr.append), daemon=True
        ).start()
        # The URL (a password in it) goes through the pipe, never on the command line.
        try:
            self._send(("start", master.url.render_as_string(hide_password=False), rules, address_hint))
        except BaseException:
            self._child.kill()
            self._child.wait()
            raise

    @staticmethod
    def wanted() -> bool:
        """Unless the deployment says `GOVDB_LINK_PROCESS=0` (a host that cannot start one)."""
        said = os.environ.get("GOVDB_LINK_PROCESS", "1").strip().lower()
        return said not in ("0", "false", "no", "off")

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
        """The next reply, of kind `expected`; chunks linked meanwhile are kept for `collect`. A
        process that answers nothing for `silence_limit()` seconds is stopped as hung."""
        limit = silence_limit()
        heard = time.monotonic()
        while True:
            try:
                reply = self._replies.get(timeout=min(1.0, limit))
            except queue.Empty:
                if self._child.poll() is not None and self._replies.empty():
                    reply = None
                elif time.monotonic() - heard >= limit:
                    self._child.kill()
                    self._child.wait()
                    raise _stopped(
                        f"answered nothing for {limit:g} s and was stopped as hung "
                        "(GOVDB_LINK_TIMEOUT sets how long to wait)"
                    ) from None
                else:
                    continue
            heard = time.monotonic()
            if reply is not None and reply[0] == "linked" and expected != "linked":
                self._linked.append((reply[1], reply[2]))
                continue
            break
        if reply is None:  # its output closed: it exited or was killed
            code = self._child.wait()
            said = "".join(self._stderr).strip()[-STDERR_KEPT:]  # a traceback's last lines say why
            raise _stopped(f"stopped (exit status {code})" + (f": {said}" if said else ""))
        kind, *rest = reply
        if kind == "error":
            raise rest[0]
        if kind != expected:
            raise _stopped(f"answered {kind!r} where {expected!r} was due")
        return rest[0] if len(rest) == 1 else rest

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            pickle.dump(message, self._child.stdin, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[arg-type]
            self._child.stdin.flush()  # type: ignore[union-attr]
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # the run stops: half sent
            raise _stopped(f"could not be sent its {message[0]!r} ({type(exc).__name__}: {exc})") from None
        except (BrokenPipeError, OSError):
            code = self._child.wait()
            while (reply := self._replies.get()) is not None:  # it may have said why first
                if reply[0] == "error":
                    raise reply[1] from None
            raise _stopped(f"stopped (exit status {code})") from None

    def close(self) -> None:
        """Let the linking process finish and exit; killed if it does not within a few seconds."""
        try:
            if self._child.stdin is not None:
                self._child.stdin.close()
            self._child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._child.kill()
            self._child.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if error is not None:  # its work is not wanted: stop it now
            self._child.kill()
        self.close()


def child_command() -> list[str]:
    """How the linking process is started: isolated (`-I`: no PYTHON* variables, no user site, not
    the current folder), with this process's module path made absolute, so it imports what this
    process would, from where this one would. An empty entry (the current folder, which changes)
    is left out; the folder of the govdb running here goes last if it is not on the path already."""
    # Relative folders as they resolve now; other entries (an editable install's path hook) as they are.
    paths = [os.path.abspath(p) if not os.path.isabs(p) and os.path.isdir(p) else p for p in sys.path if p]
    root = str(Path(__file__).resolve().parents[2])  # the folder holding govdb/link/worker.py
    if root not in paths:
        paths.append(root)
    prelude = f"import sys; sys.path[:] = {paths!r}; from govdb.link import worker; worker.main()"
    return [sys.executable, "-I", "-c", prelude]


def _read_pickles(stream: IO[bytes], put: Callable[[Any], None]) -> None:
    """Every message on `stream`, then None when it closes."""
    try:
        while True:
            put(pickle.load(stream))
    except (EOFError, OSError):
        pass
    except Exception as exc:  # a message that does not unpickle here: the run cannot go on
        put(("error", _stopped(f"sent what could not be read ({type(exc).__name__}: {exc})")))
    finally:
        put(None)


def _read_lines(stream: IO[bytes], put: Callable[[str], None]) -> None:
    for line in stream:
        put(line.decode("utf-8", "replace"))


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
            reply(("error", _sendable(exc)))
            return  # the caller stops at this error; nothing after it is wanted


def _sendable(exc: Exception) -> GovdbError:
    """The error as the caller can raise it: itself if it is a govdb error that survives pickling."""
    if isinstance(exc, GovdbError):
        try:
            copy = pickle.loads(pickle.dumps(exc))
            if isinstance(copy, GovdbError):
                return copy
        except Exception:  # an error whose arguments do not pickle
            pass
        return StoreError(str(exc)) if isinstance(exc, StoreError) else GovdbError(str(exc))
    return _stopped(f"failed: {type(exc).__name__}: {exc}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides what Ctrl-C stops
    requests: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_read_pickles, args=(sys.stdin.buffer, requests.put), daemon=True).start()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe

    def reply(message: tuple[Any, ...]) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    status = 1
    try:
        with contextlib.suppress(BrokenPipeError):  # the caller is gone
            _serve(requests, reply)
        status = 0
    finally:
        sys.stderr.flush()
        # Not the interpreter's shutdown: the reading thread is blocked in stdin, whose lock
        # shutdown would wait for (a fatal error). Every reply was flushed.
        os._exit(status)


if __name__ == "__main__":  # `python -m govdb.link.worker`: the module's own classes, not __main__'s
    from govdb.link import worker

    worker.main()
