"""Evaluation, once: Network.accuracy and the batched evaluator count the same answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import evaluation
from funcbp.evaluation import Evaluator, Stopped, batched
from funcbp.zoo import network, two_layer_net

NET = two_layer_net(8, 6, 3, weight_init_std="he")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(1234, 8)).astype(np.float32)
    return x, rng.integers(0, 3, 1234).astype(np.int32)


def _params(seed):
    return NET.init(jax.random.key(seed))


def test_the_batched_evaluator_is_the_networks_accuracy_and_loss(data):
    x, t = data
    params = _params(0)
    batches = batched(x, t, 500)
    assert [len(xb) for xb, _ in batches] == [500, 500, 234]
    score = Evaluator(lambda values: NET)(params, {}, {}, batches)
    assert score.acc == pytest.approx(float(NET.accuracy(params, x, t)), abs=1e-7)
    assert score.loss == pytest.approx(float(NET.loss(params, x, t)), rel=1e-5)
    # K models at once: each one's own numbers.
    stacked = jax.tree.map(lambda *a: jnp.stack(a), params, _params(1))
    both = Evaluator(lambda values: NET, models=2)(stacked, {}, {}, batches)
    assert both.acc.shape == (2,) and both.acc[0] == pytest.approx(score.acc, abs=1e-7)
    assert both.acc[1] == pytest.approx(float(NET.accuracy(_params(1), x, t)), abs=1e-7)


def test_one_hot_labels_count_as_their_indices(data):
    x, t = data
    params = _params(0)
    one_hot = np.eye(3, dtype=np.float32)[t]
    assert float(NET.accuracy(params, x, one_hot)) == float(NET.accuracy(params, x, t))


def test_network_accuracy_counts_through_the_one_evaluation(data, monkeypatch):
    x, t = data

    def refuse(scores, t):
        raise AssertionError("counted here")

    monkeypatch.setattr(evaluation, "correct", refuse)
    with pytest.raises(AssertionError, match="counted here"):
        NET.accuracy(_params(0), x, t)


def test_the_loss_includes_weight_decay_and_the_models_values_build_each_network(data):
    x, t = data
    net = network([6], input_size=8, output_size=3, weight_decay=0.5)
    params = net.init(jax.random.key(0))
    score = Evaluator(lambda values: net)(params, {}, {}, batched(x, t))
    assert score.loss == pytest.approx(float(net.loss(params, x, t)), rel=1e-5)
    seen = []
    Evaluator(lambda values: seen.append(sorted(values)) or net)(
        params, {}, {"w": 1.0}, batched(x, t)
    )
    assert {tuple(s) for s in seen} == {("w",)}  # each trace builds the network from the values


def test_a_stop_request_ends_an_evaluation_between_batches(data):
    x, t = data
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Stopped):
        Evaluator(lambda values: NET)(_params(0), {}, {}, batched(x, t, 100), stop=stop)
    assert len(calls) == 3  # two batches ran, the third was never started
    with pytest.raises(ValueError, match="at least one example"):
        batched(x[:0], t[:0])
