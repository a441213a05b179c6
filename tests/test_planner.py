"""The chunk planner: chunks end on evaluations, and grow to about a quarter of a second."""

from funcbp.planner import CHUNK_SECONDS, ChunkPlanner


def _plan(planner, start, end, seconds_per_step):
    lengths, i = [], start
    while i < end:
        length = planner.next(i)
        lengths.append(length)
        planner.timed(length, length * seconds_per_step)
        i += length
    return lengths


def test_chunks_end_on_every_evaluation_and_on_the_end():
    planner = ChunkPlanner(eval_every=40, iters=100, step_seconds=1.0)  # a slow guess: 1 step
    lengths = _plan(planner, 0, 100, seconds_per_step=1e-4)
    ends = [sum(lengths[: k + 1]) for k in range(len(lengths))]
    assert {40, 80, 100} <= set(ends) and ends[-1] == 100
    assert lengths[0] == 1 and max(lengths) == 40  # measured fast: whole intervals


def test_a_chunk_never_runs_much_longer_than_the_target():
    planner = ChunkPlanner(eval_every=1000, iters=5000, step_seconds=1e-6)  # an optimistic guess
    first = planner.next(0)
    planner.timed(first, first * 0.01)  # 10 ms a step, measured
    assert planner.big * 0.01 <= CHUNK_SECONDS and 1000 % planner.big == 0
    assert planner.next(first) == planner.big == planner.small == 25  # 0.25 s of 10 ms steps


def test_after_a_resume_the_chunks_line_up_again():
    planner = ChunkPlanner(eval_every=40, iters=200, step_seconds=1e-4)
    planner.timed(planner.next(0), 0.0)
    assert planner.next(13) + 13 <= 40  # from an odd iteration, back to the grid
    assert (13 + planner.next(13)) % planner.small == 0 or 13 + planner.next(13) == 40
