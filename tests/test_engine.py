"""The engine's programs: a second run of the same kind traces and compiles nothing again."""

import pytest

from funcbp import engine
from funcbp.config import TrainConfig, resolve


def test_runs_that_differ_only_in_what_the_state_holds_share_their_programs():
    run = resolve(TrainConfig(iters=40, lr=0.1, seed=0), 4000)
    same = resolve(TrainConfig(iters=80, lr=0.5, seed=3, weight_init_std=0.5), 4000)
    assert engine.programs(run) is engine.programs(same)  # rate and init live in the state
    for other in (
        TrainConfig(hidden=(60,)),
        TrainConfig(optimizer="adam"),
        TrainConfig(batch_size=50),
        TrainConfig(seeds=2),
        TrainConfig(model="multi-layer", weight_decay=0.1),
    ):
        assert engine.structure(resolve(other, 4000)) != engine.structure(run)


def test_a_loss_value_shared_by_all_models_is_part_of_the_program_one_that_varies_is_traced():
    shared = resolve(TrainConfig(model="multi-layer", weight_decay=0.1, seeds=2), 4000)
    assert shared.loss_values() == {}
    varying = resolve(TrainConfig(model="multi-layer", weight_decay=(0.1, 0.2)), 4000)
    assert varying.loss_values()["weight_decay"].tolist() == pytest.approx([0.1, 0.2])
    assert engine.structure(varying) != engine.structure(shared)
