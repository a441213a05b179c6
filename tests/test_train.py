"""The jitted training loop: determinism, no retracing, resume, optimizers, run folder."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcbp.net import two_layer
from funcbp.train import OPTIMIZERS, TrainConfig, evaluate_run, make_chunk, make_optimizer, train

QUICK = dict(iters=120, eval_every=40)


def _params(run_dir):
    with np.load(run_dir / "params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train(TrainConfig(**QUICK), out, progress=False, log=lambda s: None)


def test_run_folder_holds_metrics_curve_and_params(quick_run):
    out, metrics = quick_run
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.json", "checkpoint.npz", "curve.png", "metrics.json", "params.npz",
    ]  # fmt: skip
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["config"]["lr"] == 0.1 and on_disk["config"]["hidden"] == [50]
    assert [h["iter"] for h in on_disk["history"]] == [40, 80, 120]
    assert [h["epoch"] for h in on_disk["history"]] == [1.0, 2.0, 3.0]
    assert set(on_disk["final"]) == {"train_acc", "test_acc", "loss"}
    assert set(on_disk["timing"]) == {"compile_s", "train_s", "iters_per_s"}
    assert on_disk["final"]["test_acc"] > 0.5  # 120 SGD steps already learn something
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _params(out)["W1"].shape == (784, 50)


def test_evaluate_reproduces_the_final_accuracy(quick_run):
    out, metrics = quick_run
    result = evaluate_run(out)
    assert result["test_acc"] == pytest.approx(metrics["final"]["test_acc"])
    assert result["train_acc"] == pytest.approx(metrics["final"]["train_acc"])


def test_same_seed_same_run_other_seed_other_run(quick_run, tmp_path):
    out, metrics = quick_run
    again = train(TrainConfig(**QUICK), tmp_path / "a", progress=False, log=lambda s: None)
    chex.assert_trees_all_equal(_params(out), _params(tmp_path / "a"))
    assert again["history"] == metrics["history"]
    train(TrainConfig(**QUICK, seed=1), tmp_path / "b", progress=False, log=lambda s: None)
    assert not np.array_equal(_params(out)["W1"], _params(tmp_path / "b")["W1"])


def test_resumed_run_ends_where_an_uninterrupted_one_does(quick_run, tmp_path):
    out, metrics = quick_run
    train(TrainConfig(**{**QUICK, "iters": 80}), tmp_path, progress=False, log=lambda s: None)
    resumed = train(TrainConfig(**QUICK), tmp_path, resume=True, progress=False, log=lambda s: None)
    chex.assert_trees_all_equal(_params(out), _params(tmp_path))
    assert resumed["history"] == metrics["history"]


def test_chunks_do_not_retrace():
    opt = make_optimizer("sgd")
    params = two_layer.init(jax.random.key(0), 8, 4, 3)
    state = (params, opt.init(params))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(30, 8)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(1).integers(0, 3, 30))
    chunk = make_chunk(two_layer, opt, 5, "manual")
    key = jax.random.key(0)
    for start in (0, 10, 20):
        state, losses = chunk(state, start, key, x, t, 10)
    assert losses.shape == (10,)
    assert chunk._cache_size() == 1


def test_chunking_does_not_change_the_result():
    opt = make_optimizer("momentum")
    params = two_layer.init(jax.random.key(0), 8, 4, 3)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(30, 8)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(1).integers(0, 3, 30))
    chunk, key = make_chunk(two_layer, opt, 5, "manual"), jax.random.key(3)
    whole, _ = chunk((params, opt.init(params)), 0, key, x, t, 12)
    parts = (params, opt.init(params))
    for start in (0, 4, 8):
        parts, _ = chunk(parts, start, key, x, t, 4)
    chex.assert_trees_all_close(whole, parts, rtol=1e-6)


@pytest.mark.parametrize("grad", ["autodiff", "backprop"])
def test_grad_switch_trains_the_same_model(grad):
    opt = make_optimizer("sgd")
    params = two_layer.init(jax.random.key(0), 8, 4, 3)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(30, 8)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(1).integers(0, 3, 30))
    state = (params, opt.init(params))
    manual, _ = make_chunk(two_layer, opt, 5, "manual")(state, 0, jax.random.key(0), x, t, 20)
    other, _ = make_chunk(two_layer, opt, 5, grad)(state, 0, jax.random.key(0), x, t, 20)
    chex.assert_trees_all_close(manual, other, rtol=1e-5, atol=1e-7)


def test_optimizers_match_the_books_defaults():
    assert {k: v[0] for k, v in OPTIMIZERS.items()} == {
        "sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.01,
        "adam": 0.001,
    }  # fmt: skip
    # Momentum as the book writes it: v = 0.9 v - lr g; w += v.
    opt, w, v = make_optimizer("momentum", 0.1), jnp.array([1.0]), jnp.array([0.0])
    state, book_w = opt.init(w), w
    for g in (jnp.array([0.5]), jnp.array([-0.2]), jnp.array([0.3])):
        updates, state = opt.update(g, state, w)
        w = optax.apply_updates(w, updates)
        v = 0.9 * v - 0.1 * g
        book_w = book_w + v
    chex.assert_trees_all_close(w, book_w, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of sgd"),
        ({"hidden": (0,)}, "hidden_sizes must be positive"),
        ({"grad": "symbolic"}, "grad must be one of"),
        ({"iters": 0}, "iters must be > 0"),
        ({"eval_every": 0}, "eval_every must be > 0"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_batch_larger_than_the_training_set(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be at most the training set's size 4000"):
        train(TrainConfig(batch_size=4001), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
