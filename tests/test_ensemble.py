"""K models in one program: each is the single run it stands for, with own or shared batches."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import ensemble
from funcbp.cli import main
from funcbp.data import load_mnist
from funcbp.ensemble import init_ensemble, make_ensemble_chunk, train_ensemble
from funcbp.train import TrainConfig, make_chunk, make_optimizer, run_keys, train
from tests.test_train import QUICK, _params


def _quiet(line):
    pass


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    return out, train_ensemble(TrainConfig(**QUICK), 2, out=out, progress=False, log=_quiet)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """``funcbp train --seeds 2 --shared-batches``, through the CLI.

    ``--grad backprop`` takes the vmap path (the fused one is checked against single runs below).
    """
    out = tmp_path_factory.mktemp("shared")
    argv = ["train", "--seeds", "2", "--shared-batches", "--grad", "backprop", "--iters", "120",
            "--eval-every", "40"]  # fmt: skip
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def data():
    (x, t), _ = load_mnist("mnist-5k")
    return jnp.asarray(x), jnp.asarray(t)


def test_own_batches_model_j_is_train_with_seed_plus_j(own_run, tmp_path):
    out, metrics = own_run
    j = 1  # model 0 is checked against model 0 of the shared run below
    single = train(TrainConfig(**QUICK, seed=j), tmp_path, progress=False, log=_quiet)
    ensemble, alone = _params(out), _params(tmp_path)
    for name, value in alone.items():
        np.testing.assert_allclose(ensemble[name][j], value, rtol=1e-5, atol=1e-7)
    model = metrics["models"][j]
    assert model["seed"] == j
    for row, expected in zip(model["history"], single["history"], strict=True):
        assert row["iter"] == expected["iter"]
        assert row["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert row["test_acc"] == pytest.approx(expected["test_acc"], abs=2e-3)


def test_shared_batches_model_j_trains_from_its_init_on_the_first_seeds_batches(data):
    x, t = data
    config = TrainConfig(optimizer="adam", seed=3, hidden=(16,))  # adam: a per-model step count
    net, opt = config.network, make_optimizer("adam")
    states, data_keys = init_ensemble(config, 2, x.shape[1])
    shared = make_ensemble_chunk(net, opt, 100, "manual", shared_batches=True)
    compiled = shared.lower(states, 0, data_keys, x, t, 20).compile()
    (params, _), losses = compiled(states, 0, data_keys, x, t)
    assert losses.shape == (20, 2)
    single = make_chunk(net, opt, 100, "manual")
    for j in range(2):
        init = net.init(run_keys(3 + j)[0], x.shape[1], config.hidden, 10)
        state = (init, opt.init(init))
        (alone, _), alone_losses = single(state, 0, run_keys(3)[1], x, t, 20)
        for name, value in alone.items():
            np.testing.assert_allclose(params[name][j], value, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(losses[:, j], alone_losses, rtol=1e-5)
    # The first layers are one matmul each way: x @ [W1_1 W1_2] and x.T @ [dh_1 dh_2].
    hlo = compiled.as_text()
    assert "f32[100,32]" in hlo and "f32[784,32]" in hlo
    # The plain-jnp twins under jax.grad take the same fused path to the same params.
    twins = make_ensemble_chunk(net, opt, 100, "autodiff", shared_batches=True)
    (twin_params, _), _ = twins(states, 0, data_keys, x, t, 20)
    for name, value in params.items():
        np.testing.assert_allclose(twin_params[name], value, rtol=1e-4, atol=1e-6)


def _losses(metrics, j):
    return np.array([row["loss"] for row in metrics["models"][j]["history"]])


def test_many_models_take_the_vmap_path_to_the_same_runs(own_run, monkeypatch):
    _, unrolled = own_run
    monkeypatch.setattr(ensemble, "UNROLL_MAX", 1)  # K=2 > 1: vmap of make_chunk
    vmapped = train_ensemble(TrainConfig(**QUICK), 2, progress=False, log=_quiet)
    for j in range(2):
        np.testing.assert_allclose(_losses(vmapped, j), _losses(unrolled, j), rtol=1e-5)


def test_shared_batches_differ_from_own_batches(own_run, shared_run):
    (_, own), (_, shared) = own_run, shared_run
    # Model 0 draws seed 0's minibatches either way (backprop and manual rules agree);
    # model 1 draws seed 1's only with its own.
    np.testing.assert_allclose(_losses(shared, 0), _losses(own, 0), rtol=1e-4)
    assert np.max(np.abs(_losses(shared, 1) - _losses(own, 1))) > 1e-3


def test_metrics_json_params_and_curve(shared_run):
    out, metrics = shared_run
    assert sorted(p.name for p in out.iterdir()) == ["curve.png", "metrics.json", "params.npz"]
    assert metrics["seeds"] == [0, 1] and metrics["shared_batches"] is True
    assert metrics["devices"] == 1 and metrics["processes"] == 1
    assert metrics["config"]["iters"] == 120 and metrics["config"]["seed"] == 0
    assert [m["seed"] for m in metrics["models"]] == [0, 1]
    for model in metrics["models"]:
        assert [row["iter"] for row in model["history"]] == [40, 80, 120]
        assert model["final"] == {k: model["history"][-1][k] for k in model["final"]}
        assert model["final"]["test_acc"] > 0.5
    for name in ("train_acc", "test_acc", "loss"):
        finals = [m["final"][name] for m in metrics["models"]]
        assert metrics["summary"][name]["mean"] == pytest.approx(np.mean(finals))
        assert metrics["summary"][name]["std"] == pytest.approx(np.std(finals, ddof=1))
    timing = metrics["timing"]
    assert set(timing) == {"compile_s", "train_s", "model_iters_per_s"}
    assert timing["model_iters_per_s"] == pytest.approx(2 * 120 / timing["train_s"])
    shapes = {k: v.shape for k, v in _params(out).items()}
    assert shapes == {"W1": (2, 784, 50), "b1": (2, 50), "W2": (2, 50, 10), "b2": (2, 10)}
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("k", [0, -2, 1.5, True, "2"])
def test_bad_k_is_a_value_error(k):
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        train_ensemble(TrainConfig(iters=10), k, progress=False, log=_quiet)
