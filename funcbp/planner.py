"""How long each chunk of steps is: short enough that a signal is answered within about a
second, long enough that the host's overhead between chunks is small.

Every chunk ends on an evaluation (a multiple of ``eval_every``) or the end of
the run, or on a multiple of its own length, so that chunks line up again
after a resume. The first chunk's length comes from a pessimistic guess of a
step's time; once a chunk of that length has run, the others are the longest
divisor of the evaluation interval that ran in about :data:`CHUNK_SECONDS`
(shorter than the first, if the guess was too quick).
"""

from __future__ import annotations

__all__ = ["CHUNK_SECONDS", "ChunkPlanner"]

CHUNK_SECONDS = 0.25  # a chunk's target length: signals wait at most this long (plus evaluation)


class ChunkPlanner:
    """The next chunk's length, from the timing of those that ran.

    Args:
        eval_every: iterations between evaluations.
        iters: the run's length.
        step_seconds: a first, pessimistic guess of one step's time.
    """

    def __init__(self, eval_every: int, iters: int, step_seconds: float):
        self.eval_every, self.iters = eval_every, iters
        self.small = self._longest(1, step_seconds)
        self.big: int | None = None

    def next(self, i: int) -> int:
        """The length of the chunk that starts at iteration ``i`` (< ``iters``)."""
        stop = min(self.iters, (i // self.eval_every + 1) * self.eval_every)
        for length in (self.big, self.small):
            if length and i % length == 0 and i + length <= stop:
                return length
        return min(stop, (i // self.small + 1) * self.small) - i

    def timed(self, length: int, seconds: float) -> None:
        """A chunk of ``length`` steps took ``seconds`` (the slowest process's, in a multi-process
        run, so that every process plans the same chunks)."""
        if length != self.small or self.big is not None:
            return
        step = seconds / length
        if length * step > 2 * CHUNK_SECONDS:  # the guess was far too quick: shorter chunks
            self.small = self.big = self._longest(1, step)
        else:
            self.big = self._longest(self.small, step)

    def _longest(self, unit: int, step_seconds: float) -> int:
        """The longest multiple of ``unit`` dividing ``eval_every`` that runs in CHUNK_SECONDS."""
        fits = [
            d
            for d in range(unit, self.eval_every + 1, unit)
            if self.eval_every % d == 0 and d * step_seconds <= CHUNK_SECONDS
        ]
        return max(fits, default=unit)
