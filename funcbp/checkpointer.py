"""When a run checkpoints, the writing of its files, and what it keeps when it must stop.

The :class:`Checkpointer` writes the run folder that the run holds (its
:class:`~funcbp.runs.RunFolder`, claimed before anything is compiled): it
saves every interval, on a signal and at the end, and writes the finished
run. Only process 0 of a multi-process run writes. Each write holds the
:class:`~funcbp.stopping.Stop`'s lock, so an exit on a signal never leaves a
file half-written. A write that fails names the file and what was kept.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

from funcbp import runs
from funcbp.config import TrainConfig
from funcbp.io import WriteError
from funcbp.steps import TrainState
from funcbp.stopping import Stop

__all__ = ["CHECKPOINT_SECONDS", "Checkpointer", "checkpoint_interval"]

CHECKPOINT_SECONDS = 60.0  # the default checkpoint interval


def checkpoint_interval(every: int | float | None) -> Callable[[int, float], bool]:
    """``due(iterations_since, seconds_since)``: an int counts iterations, a float seconds."""
    if every is None:
        every = CHECKPOINT_SECONDS
    if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every < math.inf:
        raise ValueError(f"checkpoint_every must be a positive number, got {every!r}")
    if isinstance(every, int):
        return lambda iterations, seconds: iterations >= every
    return lambda iterations, seconds: seconds >= every


class Checkpointer:
    """The run folder's writer.

    Args:
        out: the run folder, held by this process; None writes nothing.
        config: what the run was given (the checkpoint's config).
        stop: told of every checkpoint, and whose lock each write holds.
        start: the iteration of the checkpoint the run resumed from, or 0.
        overwrite: the first checkpoint replaces funcbp's files in ``out``.
        every: iterations (int) or seconds (float) between checkpoints.
    """

    def __init__(
        self,
        out: Path | None,
        config: TrainConfig,
        stop: Stop,
        *,
        start: int = 0,
        overwrite: bool = False,
        every: int | float | None = None,
    ):
        self.out, self.config, self.stop, self.overwrite = out, config, stop, overwrite
        self.writes = out is not None and jax.process_index() == 0  # one writer per folder
        self.due_after = checkpoint_interval(every)
        self.saved_at, self.saved_time = start, time.monotonic()
        self.folder_made = start > 0
        if self.writes and start:
            stop.started_from(out, start)

    def due(self, iteration: int) -> bool:
        """Whether the interval since the last checkpoint has passed."""
        return self.due_after(iteration - self.saved_at, time.monotonic() - self.saved_time)

    def behind(self, iteration: int) -> bool:
        """Whether the state at ``iteration`` is newer than the checkpoint on disk."""
        return iteration > self.saved_at

    def save(self, state: TrainState, iteration: int, record: dict[str, Any], pending) -> None:
        """Checkpoints ``state`` (a host copy) after ``iteration`` steps, with the record so far."""
        if self.writes:
            with self.stop.writing(), self._failing():
                if not self.folder_made:
                    runs.start_out(self.out, overwrite=self.overwrite)
                runs.save_checkpoint(self.out, self.config, state, iteration, record, pending)
            self.stop.saved(self.out, iteration)
        self.folder_made = True
        self.saved_at, self.saved_time = iteration, time.monotonic()

    def finish(self, metrics: dict[str, Any], params: dict, layer_state: dict) -> None:
        """Writes the finished run's files next to its last checkpoint."""
        if self.writes:
            with self._failing():
                runs.write_run(self.out, metrics, params, layer_state, lock=self.stop.writing)

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:  # a full disk, a folder made read-only during the run
            raise WriteError(e.errno, f"{e}{self.kept()}") from None

    def kept(self) -> str:
        """What a run that stops now leaves, for its error message."""
        if self.writes and self.saved_at:
            return f"; kept the checkpoint of iteration {self.saved_at} in {self.out}"
        return ""
