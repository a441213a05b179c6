"""The one training loop: run folders, determinism, resume, signals, divergence, K models."""

import json
import os
import signal
import threading

import chex
import numpy as np
import pytest

from funcbp import runs
from funcbp.config import TrainConfig
from funcbp.train import Diverged, Interrupted, fit, resume

pytestmark = pytest.mark.slow  # whole training runs


QUICK = dict(iters=120, eval_every=40)


def _quiet(line):
    pass


def _fit(config, out=None, **kw):
    return fit(config, out, progress=False, log=_quiet, **kw)


def _params(run_dir):
    with np.load(run_dir / "params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, _fit(TrainConfig(**QUICK), out).metrics


def test_run_folder_holds_metrics_curve_params_and_checkpoint(quick_run):
    out, metrics = quick_run
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint-000000120.npz",
        "checkpoint.json",
        "curve.png",
        "metrics.json",
        "params.npz",
    ]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(runs.dumps_json(metrics))
    assert on_disk["config"]["lr"] == 0.1 and on_disk["config"]["hidden"] == [50]
    assert [h["iter"] for h in on_disk["history"]] == [40, 80, 120]
    assert [h["epoch"] for h in on_disk["history"]] == [1.0, 2.0, 3.0]
    assert set(on_disk["final"]) == {"train_acc", "test_acc", "loss"}
    assert set(on_disk["timing"]) == {"compile_s", "train_s", "eval_s", "iters_per_s"}
    assert on_disk["timing"]["iters_per_s"] == pytest.approx(120 / on_disk["timing"]["train_s"])
    assert on_disk["final"]["test_acc"] > 0.5  # 120 SGD steps already learn something
    assert on_disk["final"]["test_acc"] == on_disk["history"][-1]["test_acc"]
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _params(out)["W1"].shape == (784, 50)


def test_evaluate_reproduces_the_final_accuracy(quick_run):
    out, metrics = quick_run
    result = runs.evaluate_run(out)
    assert result["test_acc"] == pytest.approx(metrics["final"]["test_acc"])
    assert result["train_acc"] == pytest.approx(metrics["final"]["train_acc"])


def test_same_seed_same_run_other_seed_other_run(quick_run, tmp_path):
    out, metrics = quick_run
    again = _fit(TrainConfig(**QUICK), tmp_path / "a").metrics
    chex.assert_trees_all_equal(_params(out), _params(tmp_path / "a"))
    assert again["history"] == metrics["history"]
    _fit(TrainConfig(**QUICK, seed=1), tmp_path / "b")
    assert not np.array_equal(_params(out)["W1"], _params(tmp_path / "b")["W1"])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(quick_run, tmp_path):
    out, metrics = quick_run
    _fit(TrainConfig(**{**QUICK, "iters": 80}), tmp_path)
    resumed = resume(tmp_path, {"iters": 120}, progress=False, log=_quiet).metrics
    chex.assert_trees_all_equal(_params(out), _params(tmp_path))
    assert resumed["history"] == metrics["history"]  # no row twice


def test_resuming_to_fewer_iterations_is_refused_and_leaves_the_checkpoint(quick_run, tmp_path):
    out, _ = quick_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="iters 40 is fewer than the 120 iterations already done"):
        resume(out, {"iters": 40}, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="lr cannot change on resume"):
        resume(out, {"lr": 0.5}, progress=False, log=_quiet)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_k_models_resume_bit_identically(tmp_path):
    config = TrainConfig(iters=80, eval_every=20, seeds=2)
    straight = _fit(config, tmp_path / "straight")
    _fit(TrainConfig(iters=40, eval_every=20, seeds=2), tmp_path / "parts")
    parts = resume(tmp_path / "parts", {"iters": 80}, progress=False, log=_quiet)
    chex.assert_trees_all_equal(straight.params, parts.params)
    assert parts.params["W1"].shape == (2, 784, 50)
    assert straight.metrics["history"] == parts.metrics["history"]
    metrics = parts.metrics
    assert [m["seed"] for m in metrics["models"]] == [0, 1]
    finals = [m["test_acc"] for m in metrics["models"]]
    assert metrics["final"]["test_acc"]["mean"] == pytest.approx(np.mean(finals))
    assert metrics["final"]["test_acc"]["std"] == pytest.approx(np.std(finals, ddof=1))
    evaluated = runs.evaluate_run(tmp_path / "parts")
    assert [m["test_acc"] for m in evaluated["models"]] == pytest.approx(finals)


def test_checkpoints_are_written_periodically(tmp_path, monkeypatch):
    seen = []
    save = runs.save_checkpoint
    monkeypatch.setattr(
        runs, "save_checkpoint", lambda out, c, s, i, *a: (seen.append(i), save(out, c, s, i, *a))
    )
    _fit(TrainConfig(iters=100, eval_every=20), tmp_path, checkpoint_every=40)
    assert seen == [40, 80, 100]  # every 40 iterations (at chunk ends), and at the end


def _signal_soon(signum, delay=0.05):
    timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
    timer.start()
    return timer


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_within_a_chunk_even_when_one_evaluation_spans_the_run(tmp_path, signum):
    # One evaluation interval is the whole run; the loop still stops after a short chunk.
    config = TrainConfig(iters=20_000, eval_every=20_000)
    timer = _signal_soon(signum)
    with pytest.raises(Interrupted, match=f"stopped by {signal.Signals(signum).name}") as e:
        _fit(config, tmp_path)
    timer.join()
    assert e.value.signum == signum and 0 < e.value.iteration < 20_000
    assert runs.load_checkpoint(tmp_path).iteration == e.value.iteration
    assert not (tmp_path / "params.npz").exists()
    # Resuming finishes the run as if it had never stopped.
    done = resume(tmp_path, {"iters": e.value.iteration + 40}, progress=False, log=_quiet)
    straight = _fit(TrainConfig(iters=e.value.iteration + 40, eval_every=20_000), tmp_path / "s")
    chex.assert_trees_all_equal(done.params, straight.params)


def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(tmp_path):
    # With lr * lambda = 4 weight decay multiplies W by -3 each step: the decay term
    # 0.5 * lambda * sum(W**2) overflows float32 near step 37, after good checkpoints.
    config = TrainConfig(
        model="multi-layer",
        hidden=(10,),
        optimizer="sgd",
        lr=0.1,
        weight_decay=40.0,
        iters=400,
        eval_every=10,
    )
    with pytest.raises(Diverged, match=r"the loss became inf at iteration 37; kept the checkpoint"):
        _fit(config, tmp_path, checkpoint_every=10)
    kept = runs.load_checkpoint(tmp_path)
    assert 0 < kept.iteration < 37 and not (tmp_path / "metrics.json").exists()
    assert all(np.isfinite(row["loss"]) for row in kept.history)
    # Weights of std 1e30 overflow the first logits: nothing good to keep.
    with pytest.raises(Diverged, match=r"the loss became (nan|inf) at iteration 1; try a smaller"):
        _fit(TrainConfig(iters=40, weight_init_std=1e30), tmp_path / "huge")
    assert not (tmp_path / "huge" / "checkpoint.json").exists()


def test_log_lines_come_at_most_every_tenth_of_the_run(tmp_path):
    lines = []
    fit(TrainConfig(iters=400, eval_every=8), tmp_path, progress=False, log=lines.append)
    assert 1 <= len(lines) <= 11 and lines[-1].startswith("iter 400/400")
    lines.clear()
    fit(
        TrainConfig(iters=400, eval_every=8),
        tmp_path,
        progress=False,
        log=lines.append,
        log_every=200,
        overwrite=True,
    )
    assert [line.split()[1] for line in lines] == ["200/400", "400/400"]


def test_nothing_is_written_when_the_settings_are_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="batch_size must be at most the training set's size 4000"):
        _fit(TrainConfig(batch_size=4001), out)
    with pytest.raises(ValueError, match=r"the model does not fit: .* parameters need about"):
        _fit(TrainConfig(hidden=(50_000_000,)), out)
    assert not out.exists()


def test_batch_norm_and_dropout_train_through_the_step_and_resume_bit_identically(tmp_path):
    # The step carries the running statistics and draws step i's masks from fold_in(key, i).
    config = dict(
        model="multi-layer",
        hidden=(20, 10),
        batch_norm=True,
        dropout=0.2,
        weight_decay=0.01,
        eval_every=10,
    )
    straight = _fit(TrainConfig(**config, iters=40), tmp_path / "straight")
    _fit(TrainConfig(**config, iters=20), tmp_path / "parts")
    parts = resume(tmp_path / "parts", {"iters": 40}, progress=False, log=_quiet)
    chex.assert_trees_all_equal(straight.params, parts.params)
    chex.assert_trees_all_equal(straight.layer_state, parts.layer_state)
    assert sorted(straight.layer_state) == [
        "running_mean1",
        "running_mean2",
        "running_var1",
        "running_var2",
    ]
    assert np.all(straight.layer_state["running_var1"] > 0)  # updated from their zeros
    saved = _params(tmp_path / "straight")
    assert "gamma1" in saved and "running_var2" in saved
    # Evaluation runs in eval mode, on the running statistics.
    evaluated = runs.evaluate_run(tmp_path / "straight")
    assert evaluated["test_acc"] == pytest.approx(straight.metrics["final"]["test_acc"])
