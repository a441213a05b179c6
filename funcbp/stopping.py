"""Stopping a run on SIGINT or SIGTERM, from the first instant, and saying what was kept.

A :class:`Stop` records the signals and what the run has written so far. Its
handlers only record: nothing is raised inside the interpreter's callbacks
(where a ``KeyboardInterrupt`` is swallowed and the Ctrl-C lost), and the
training loop stops at its next safe point, between chunks or evaluation
batches, after a checkpoint.

:func:`supervise` runs a command in a worker thread while the main thread
waits and answers signals, so a signal is answered within about a second even
while the worker sits in one long call (an import, a compile). If the worker
has not stopped by itself within the grace period, or has nothing unsaved,
the process exits at once with one line, after any file being written is
complete. ``funcbp train`` installs the handlers before it imports JAX.

The first signal decides the exit status, 128 + its number (130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP). Once one has come, the handlers stay until
the process is gone (:meth:`Stop.uninstall`), so later ones are only recorded,
even during the interpreter's exit: no ``KeyboardInterrupt`` from an exit
hook, no death by the second signal.

No JAX here.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["GRACE_S", "SIGNALS", "Stop", "supervise"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a closed terminal stops a run too
GRACE_S = 1.5  # how long a worker that can stop by itself is given to do so


class Stop:
    """The signals a run has received, and what it has kept on disk.

    The training loop reports its checkpoints (:meth:`saved`), holds
    :meth:`writing` while it writes a file, and marks itself :attr:`stoppable`
    once it reads :attr:`requested` between chunks.
    """

    def __init__(self, resume_command: str | None = None, *, checkpoints: bool = True) -> None:
        self.signals: list[int] = []
        # How the goodbye says to continue; default ``funcbp train --resume <the run folder>``.
        self.resume_command = resume_command
        self.checkpoints = checkpoints  # False: a command with nothing to resume
        self.out: Path | None = None  # the run folder, once it holds a checkpoint
        self.saved_at: int | None = None  # the iteration of the checkpoint on disk
        self.resumed_from: int | None = None  # the checkpoint this run started from
        self.stoppable = False
        self._lock = threading.Lock()

    @property
    def requested(self) -> int | None:
        """The first signal received, or None."""
        return self.signals[0] if self.signals else None

    def handler(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def install(self) -> Callable[[], None]:
        """Handles SIGINT, SIGTERM and SIGHUP from now on; returns the restoring function."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signals reach the main thread only; leave them alone
        previous = {sig: signal.signal(sig, self.handler) for sig in SIGNALS}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def uninstall(self, restore: Callable[[], None]) -> None:
        """``restore()``, unless a signal has come: then further ones are recorded to the end."""
        if not self.signals:
            restore()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held while a file is written: the process never exits half-way through one."""
        with self._lock:
            yield

    def saved(self, out: Path, iteration: int) -> None:
        self.out, self.saved_at = Path(out), iteration

    def started_from(self, out: Path, iteration: int) -> None:
        self.out, self.saved_at, self.resumed_from = Path(out), iteration, iteration

    def goodbye(self, where: str = "") -> str:
        """One line: which signal stopped the run, where, what was kept, how to resume."""
        name = signal.Signals(self.requested or signal.SIGINT).name
        where = f" {where}" if where else ""
        if not self.checkpoints:
            return f"stopped by {name}{where}"
        again = self.resume_command
        if self.saved_at is None:  # an experiment's folder holds its settings from the start
            kept = "nothing was written" if again is None else "nothing was trained yet"
            return f"stopped by {name}{where}; {kept}" + (f"; resume with {again}" if again else "")
        kept = f"the checkpoint of iteration {self.saved_at} in {self.out}"
        if self.saved_at == self.resumed_from:
            kept += " is as it was"
        else:
            kept = "kept " + kept
        again = again or f"funcbp train --resume {self.out}"
        return f"stopped by {name}{where}; {kept}; resume with {again}"


def supervise(work: Callable[[], Any], stop: Stop, *, prefix: str, grace: float = GRACE_S) -> Any:
    """``work()`` in a worker thread; its result, or its exception raised here.

    On a signal: a worker that reads ``stop.requested`` (``stop.stoppable``)
    gets ``grace`` seconds to stop by itself; otherwise, or on a second
    signal, the process prints ``prefix: stop.goodbye()`` on stderr and exits
    with 128 + the signal's number, once no file is being written.
    """
    outcome: queue.Queue = queue.Queue(maxsize=1)

    def target() -> None:
        try:
            outcome.put((True, work()))
        except BaseException as e:  # handed to the main thread, which raises it
            outcome.put((False, e))

    threading.Thread(target=target, name="funcbp-worker", daemon=True).start()
    deadline = None
    while True:
        try:
            ok, value = outcome.get(timeout=0.05)  # signals interrupt the wait
            break
        except queue.Empty:
            pass
        if stop.requested is not None and deadline is None:
            deadline = time.monotonic() + (grace if stop.stoppable else 0.0)
        if deadline is not None and (time.monotonic() >= deadline or len(stop.signals) > 1):
            _exit_now(stop, prefix)
    if not ok:
        raise value
    return value


def _exit_now(stop: Stop, prefix: str) -> None:
    with stop.writing():  # a file being written is finished first; no other starts
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # what was printed comes before the goodbye
        line = f"{prefix}: {stop.goodbye()}\n".encode(errors="replace")
        with contextlib.suppress(OSError):
            os.write(2, line)
            # Nothing after the goodbye: the worker's or XLA's threads write into the void.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        os._exit(128 + (stop.requested or signal.SIGINT))
