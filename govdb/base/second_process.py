"""A second interpreter of one run, spoken to in pickles over pipes: the other core's share of a
bulk job (linking for `process`, the next chunk worked out for `promote`).

One interpreter runs Python on one core at a time; threads were tried for promote and were slower.
The second process is started with pipes as an isolated interpreter given this process's module
path (`child_command`), not through multiprocessing: a spawned multiprocessing child imports the
caller's main script again, and a script without a `__main__` guard would run its work twice.
Messages are pickles between the two processes of one run, never read from anywhere else. The
second process exits when its input closes (the caller stopped, however it stopped), and ignores
the terminal's Ctrl-C, which the caller handles.
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

from govdb.errors import ConfigError, GovdbError, StoreError

STDERR_KEPT = 4000  # characters of the second process's own error output kept for a message

Stopped = Callable[[str], GovdbError]  # the error saying the second process stopped, and why
Serve = Callable[["queue.Queue[Any]", Callable[[tuple[Any, ...]], None]], None]


def wanted(variable: str) -> bool:
    """Unless the deployment sets `variable` to 0 (a host that cannot start a second process)."""
    said = os.environ.get(variable, "1").strip().lower()
    return said not in ("0", "false", "no", "off")


def silence_limit(variable: str, default: float, what: str) -> float:
    """The seconds `what` may answer nothing: `variable` if the deployment sets it, else `default`."""
    said = os.environ.get(variable, "").strip()
    if not said:
        return default
    try:
        seconds = float(said)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(
            f"{variable}={said[:40]!r} is not a number of seconds; set it to how long {what} may "
            f"answer nothing, e.g. {default:.0f}, or unset it"
        )
    return seconds


class SecondProcess:
    """The caller's end: `_send` a message, `_next` the next reply (in the order sent)."""

    def __init__(self, module: str, stopped: Stopped, silence: Callable[[], float], setting: str) -> None:
        """Start `python -I` running `module`'s `main()`; `stopped` makes the error for a process
        that stopped or failed; one that answers nothing for `silence()` seconds (read at each
        wait) is taken as hung, and the message names the `setting` that sets it."""
        self._stopped_error = stopped
        self._silence = silence
        self._setting = setting
        try:
            self._child = subprocess.Popen(
                child_command(module),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (OSError, ValueError) as exc:  # no such interpreter, no processes left, ...
            raise stopped(f"could not be started ({type(exc).__name__}: {exc})") from None
        assert self._child.stdin and self._child.stdout and self._child.stderr
        self._replies: queue.Queue[Any] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        threading.Thread(
            target=read_pickles, args=(self._child.stdout, self._replies.put, stopped), daemon=True
        ).start()
        threading.Thread(
            target=_read_lines, args=(self._child.stderr, self._stderr.append), daemon=True
        ).start()

    def _start(self, message: tuple[Any, ...]) -> None:
        """Send the first message; the process is killed if it cannot be sent."""
        try:
            self._send(message)
        except BaseException:
            self._child.kill()
            self._child.wait()
            raise

    def _next(self) -> tuple[Any, ...]:
        """The next reply. An error the process sent is raised here; one that exits, or answers
        nothing for the silence limit (then stopped as hung), raises the `stopped` error."""
        limit = self._silence()
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
                    raise self._stopped_error(
                        f"answered nothing for {limit:g} s and was stopped as hung "
                        f"({self._setting} sets how long to wait)"
                    ) from None
                else:
                    continue
            break
        if reply is None:  # its output closed: it exited or was killed
            code = self._child.wait()
            said = "".join(self._stderr).strip()[-STDERR_KEPT:]  # a traceback's last lines say why
            raise self._stopped_error(f"stopped (exit status {code})" + (f": {said}" if said else ""))
        if reply[0] == "error":
            raise reply[1]
        return tuple(reply)

    def _expect(self, reply: tuple[Any, ...], expected: str) -> Any:
        """The reply's contents, if it is of kind `expected`."""
        kind, *rest = reply
        if kind != expected:
            raise self._stopped_error(f"answered {kind!r} where {expected!r} was due")
        return rest[0] if len(rest) == 1 else rest

    def _send(self, message: tuple[Any, ...]) -> None:
        """Send a message; a process that takes none of it for the silence limit (stopped or
        frozen while the pipe is full) is stopped as hung, as one that answers nothing is."""
        try:
            payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise self._stopped_error(
                f"could not be sent its {message[0]!r} ({type(exc).__name__}: {exc})"
            ) from None
        failed: list[BaseException] = []
        sent = threading.Event()

        def write() -> None:
            try:
                self._child.stdin.write(payload)  # type: ignore[union-attr]
                self._child.stdin.flush()  # type: ignore[union-attr]
            except BaseException as exc:  # handed to the caller below
                failed.append(exc)
            finally:
                sent.set()

        threading.Thread(target=write, daemon=True).start()
        limit = self._silence()
        if not sent.wait(limit):
            self._child.kill()
            self._child.wait()
            raise self._stopped_error(
                f"took nothing it was sent for {limit:g} s and was stopped as hung "
                f"({self._setting} sets how long to wait)"
            )
        if failed and isinstance(failed[0], OSError):  # a broken pipe: it exited
            code = self._child.wait()
            while (reply := self._replies.get()) is not None:  # it may have said why first
                if reply[0] == "error":
                    raise reply[1] from None
            raise self._stopped_error(f"stopped (exit status {code})") from None
        if failed:
            raise failed[0]

    def close(self) -> None:
        """Let the second process finish and exit; killed if it does not within a few seconds."""
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


def child_command(module: str) -> list[str]:
    """How the second process is started: isolated (`-I`: no PYTHON* variables, no user site, not
    the current folder), with this process's module path made absolute, so it imports what this
    process would, from where this one would. An empty entry (the current folder, which changes)
    is left out; the folder of the govdb running here goes last if it is not on the path already."""
    # Relative folders as they resolve now; other entries (an editable install's path hook) as they are.
    paths = [os.path.abspath(p) if not os.path.isabs(p) and os.path.isdir(p) else p for p in sys.path if p]
    root = str(Path(__file__).resolve().parents[2])  # the folder holding govdb/base/second_process.py
    if root not in paths:
        paths.append(root)
    parent, _, name = module.rpartition(".")
    prelude = f"import sys; sys.path[:] = {paths!r}; from {parent} import {name}; {name}.main()"
    return [sys.executable, "-I", "-c", prelude]


def read_pickles(stream: IO[bytes], put: Callable[[Any], None], stopped: Stopped) -> None:
    """Every message on `stream`, then None when it closes."""
    try:
        while True:
            put(pickle.load(stream))
    except (EOFError, OSError):
        pass
    except Exception as exc:  # a message that does not unpickle here: the run cannot go on
        put(("error", stopped(f"sent what could not be read ({type(exc).__name__}: {exc})")))
    finally:
        put(None)


def _read_lines(stream: IO[bytes], put: Callable[[str], None]) -> None:
    for line in stream:
        put(line.decode("utf-8", "replace"))


def sendable(exc: Exception, stopped: Stopped) -> GovdbError:
    """The error as the caller can raise it: itself if it is a govdb error that survives pickling."""
    if isinstance(exc, GovdbError):
        try:
            copy = pickle.loads(pickle.dumps(exc))
            if isinstance(copy, GovdbError):
                return copy
        except Exception:  # an error whose arguments do not pickle
            pass
        return StoreError(str(exc)) if isinstance(exc, StoreError) else GovdbError(str(exc))
    return stopped(f"failed: {type(exc).__name__}: {exc}")


def child_main(serve: Serve, stopped: Stopped) -> None:
    """The second process's whole life: requests from stdin to `serve`, replies to stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides what Ctrl-C stops
    requests: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=read_pickles, args=(sys.stdin.buffer, requests.put, stopped), daemon=True).start()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe

    def reply(message: tuple[Any, ...]) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    status = 1
    try:
        with contextlib.suppress(BrokenPipeError):  # the caller is gone
            serve(requests, reply)
        status = 0
    finally:
        sys.stderr.flush()
        # Not the interpreter's shutdown: the reading thread is blocked in stdin, whose lock
        # shutdown would wait for (a fatal error). Every reply was flushed.
        os._exit(status)
