"""The one training loop: run folders, determinism, resume, signals, divergence, sweeps."""

import dataclasses
import json
import os
import signal

import chex
import numpy as np
import pytest

from funcbp import runs, train
from funcbp.config import Range, TrainConfig
from funcbp.train import Diverged, Interrupted, fit, resume

pytestmark = pytest.mark.slow  # whole training runs


QUICK = dict(iters=120, eval_every=40)


def _quiet(line):
    pass


def _fit(config, out=None, **kw):
    return fit(config, out, progress=False, log=_quiet, **kw)


def _resume(out, changes=None, **kw):
    return resume(out, changes, progress=False, log=_quiet, **kw)


def _params(run_dir):
    with np.load(run_dir / "params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
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
    assert on_disk["config"] == TrainConfig(**QUICK).to_dict()  # what was given, as given
    assert on_disk["run"]["models"] == [{"seed": 0, "lr": 0.1, "weight_init_std": 0.01}]
    assert on_disk["run"]["architecture"] == {"hidden": [50]}
    assert set(on_disk["versions"]) == {"funcbp", "jax", "jaxlib", "optax"}
    assert on_disk["device"]["count"] == on_disk["devices"] == 1 and on_disk["device"]["kind"]
    assert on_disk["started"] <= on_disk["finished"]
    rows = on_disk["history"]
    assert [h["iter"] for h in rows] == [40, 80, 120]
    assert [h["epoch"] for h in rows] == [1.0, 2.0, 3.0]
    assert set(rows[0]) == {
        "iter",
        "epoch",
        "loss",
        "train_acc",
        "train_loss",
        "test_acc",
        "test_loss",
    }
    assert sum(c["loss"] for c in on_disk["chunks"]) / len(on_disk["chunks"]) > 0
    assert on_disk["chunks"][-1]["iter"] == 120
    assert set(on_disk["timing"]) == {"compile_s", "train_s", "eval_s", "iters_per_s"}
    assert on_disk["timing"]["iters_per_s"] == pytest.approx(120 / on_disk["timing"]["train_s"])
    final = on_disk["final"]
    assert final["test_acc"] > 0.5  # 120 SGD steps already learn something
    assert final["test_acc"] == rows[-1]["test_acc"] and final["test_loss"] == rows[-1]["test_loss"]
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _params(out)["W1"].shape == (784, 50)


def test_a_replaced_config_trains_its_own_recipe():
    adam = _fit(dataclasses.replace(TrainConfig(iters=40), optimizer="adam")).metrics
    assert adam["run"]["optimizer"] == "adam" and adam["run"]["models"][0]["lr"] == 0.001
    conv = _fit(dataclasses.replace(TrainConfig(iters=4, eval_every=4), model="simple-convnet"))
    assert (
        conv.params["W1"].shape == (30, 1, 5, 5)
        and conv.metrics["run"]["model"] == "simple-convnet"
    )


def test_evaluate_reproduces_the_final_accuracy(quick_run):
    out, metrics = quick_run
    result = runs.evaluate_run(out)
    assert result["final"]["test_acc"] == pytest.approx(metrics["final"]["test_acc"])
    assert result["final"]["train_acc"] == pytest.approx(metrics["final"]["train_acc"])


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
    resumed = _resume(tmp_path, {"iters": 120}).metrics
    chex.assert_trees_all_equal(_params(out), _params(tmp_path))
    assert resumed["history"] == metrics["history"]  # no row twice


def test_resuming_to_fewer_iterations_is_refused_and_leaves_the_checkpoint(quick_run, tmp_path):
    out, _ = quick_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="iters 40 is fewer than the 120 iterations already done"):
        _resume(out, {"iters": 40})
    with pytest.raises(ValueError, match="lr cannot change on resume"):
        _resume(out, {"lr": 0.5})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_k_models_resume_bit_identically(tmp_path):
    config = TrainConfig(iters=80, eval_every=20, seeds=2)
    straight = _fit(config, tmp_path / "straight")
    _fit(TrainConfig(iters=40, eval_every=20, seeds=2), tmp_path / "parts")
    parts = _resume(tmp_path / "parts", {"iters": 80})
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


def _signal_at(signum, iteration):
    """A hook for the loop: sends ``signum`` to this process once ``iteration`` is passed."""
    sent = []

    def hook(i):
        if i >= iteration and not sent:
            sent.append(i)
            os.kill(os.getpid(), signum)

    return hook


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_at_the_next_chunk_and_it_resumes_bit_identically(tmp_path, signum):
    # One evaluation interval is the whole run: the loop still stops after a short chunk,
    # and the losses of the unfinished interval are kept for the row the resumed run writes.
    config = TrainConfig(iters=600, eval_every=600)
    name = signal.Signals(signum).name
    with pytest.raises(Interrupted, match=f"stopped by {name} at iteration") as e:
        _fit(config, tmp_path / "run", on_chunk=_signal_at(signum, 1))
    stopped = e.value.iteration
    assert e.value.signum == signum and 0 < stopped < 600
    assert f"resume with funcbp train --resume {tmp_path / 'run'}" in str(e.value)
    assert runs.load_checkpoint(tmp_path / "run").iteration == stopped
    assert not (tmp_path / "run" / "params.npz").exists()
    done = _resume(tmp_path / "run")
    straight = _fit(config, tmp_path / "straight")
    chex.assert_trees_all_equal(done.params, straight.params)
    assert done.metrics["history"] == straight.metrics["history"]


def test_a_signal_during_an_evaluation_keeps_the_state_and_the_resume_evaluates_it(
    tmp_path, monkeypatch
):
    row = train.RunEvaluator.row

    def signalling_row(self, state, i, *args):
        if i == 40:
            os.kill(os.getpid(), signal.SIGTERM)  # between the evaluation's batches
        return row(self, state, i, *args)

    monkeypatch.setattr(train.RunEvaluator, "row", signalling_row)
    with pytest.raises(Interrupted, match="stopped by SIGTERM at iteration 40") as e:
        _fit(TrainConfig(iters=80, eval_every=40), tmp_path / "run")
    assert e.value.iteration == 40
    kept = runs.load_checkpoint(tmp_path / "run")
    assert kept.iteration == 40 and kept.record["history"] == []  # the row was not finished
    monkeypatch.setattr(train.RunEvaluator, "row", row)
    done = _resume(tmp_path / "run")
    straight = _fit(TrainConfig(iters=80, eval_every=40), tmp_path / "straight")
    assert done.metrics["history"] == straight.metrics["history"]


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
    assert all(np.isfinite(row["loss"]) for row in kept.record["history"])
    # Weights of std 1e30 overflow the first logits: nothing good to keep, and no folder.
    with pytest.raises(Diverged, match=r"the loss became (nan|inf) at iteration 1; try a smaller"):
        _fit(TrainConfig(iters=40, weight_init_std=1e30), tmp_path / "huge")
    assert not (tmp_path / "huge").exists()


def test_one_diverging_model_of_a_sweep_does_not_stop_the_others(tmp_path):
    config = TrainConfig(iters=80, eval_every=40, weight_init_std=(0.01, 1e30))
    _fit(config, tmp_path)
    good, bad = json.loads((tmp_path / "metrics.json").read_text())["models"]
    assert good["diverged_at"] is None and good["test_acc"] > 0.5
    assert bad["diverged_at"] == 1 and bad["test_loss"] is None  # NaN, written as null


def test_log_lines_come_at_most_every_tenth_of_the_run(tmp_path):
    lines = []
    fit(TrainConfig(iters=400, eval_every=8), tmp_path / "a", progress=False, log=lines.append)
    assert 1 <= len(lines) <= 11 and lines[-1].startswith("iter 400/400")
    lines.clear()
    fit(TrainConfig(iters=400, eval_every=8), tmp_path / "b", progress=False, log=lines.append,
        log_every=200)  # fmt: skip
    assert [line.split()[1] for line in lines] == ["200/400", "400/400"]


def test_nothing_is_written_when_the_settings_are_refused(tmp_path):
    out = tmp_path / "deep" / "run"
    with pytest.raises(ValueError, match="batch_size must be at most the training set's size 4000"):
        _fit(TrainConfig(batch_size=4001), out)
    with pytest.raises(ValueError, match=r"the model does not fit: .* parameters need about"):
        _fit(TrainConfig(hidden=(50_000_000,)), out)  # refused after out was checked
    with pytest.raises(ValueError, match="data_size must be at most the training set's size"):
        _fit(TrainConfig(data_size=5000), out)
    assert list(tmp_path.iterdir()) == []  # not even the folders above the run's


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
    parts = _resume(tmp_path / "parts", {"iters": 40})
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
    assert evaluated["final"]["test_acc"] == pytest.approx(straight.metrics["final"]["test_acc"])


# --- sweeps -------------------------------------------------------------------------


def test_a_grid_of_rates_and_seeds_trains_each_model_as_it_trains_alone(tmp_path):
    base = dict(iters=30, eval_every=15, optimizer="momentum")
    grid = _fit(TrainConfig(**base, lr=(0.1, 0.01, 0.001), seeds=2), tmp_path / "grid")
    models = grid.metrics["run"]["models"]
    assert len(models) == 6 and grid.params["W1"].shape == (6, 784, 50)
    for j, m in enumerate(models):
        alone = _fit(TrainConfig(**base, lr=m["lr"], seed=m["seed"]))
        for name, value in alone.params.items():
            np.testing.assert_allclose(grid.params[name][j], value, rtol=1e-6, atol=1e-9)
    sweep = json.loads((tmp_path / "grid" / "sweep.json").read_text())
    assert sweep["varying"] == ["lr"] and sweep["ranking"] is None  # no validation set
    assert [c["values"] for c in sweep["configurations"]] == [{"lr": r} for r in (0.1, 0.01, 0.001)]
    assert [c["models"] for c in sweep["configurations"]] == [[0, 1], [2, 3], [4, 5]]


def test_a_random_search_ranks_its_trials_on_validation_and_resumes_bit_identically(tmp_path):
    config = TrainConfig(
        model="multi-layer",
        hidden=(20, 20),
        optimizer="sgd",
        trials=4,
        lr=Range(1e-3, 1e-1),
        validation=0.2,
        data_size=500,
        epochs=3,
    )
    straight = _fit(config, tmp_path / "straight")
    assert straight.metrics["run"]["train_size"] == 400
    rows = straight.metrics["history"]
    assert [r["iter"] for r in rows] == [4, 8, 12] and "test_acc" not in rows[0]
    assert len(rows[0]["val_acc"]) == 4
    sweep = json.loads((tmp_path / "straight" / "sweep.json").read_text())
    val = [c["val_acc"]["mean"] for c in sweep["configurations"]]
    assert sweep["ranked_by"] == "val_acc" and val[sweep["ranking"][0]] == max(val)
    assert sorted(sweep["ranking"]) == [0, 1, 2, 3]
    assert all("test_acc" in m for m in straight.metrics["models"])  # reported, never ranked on
    # Stopped by a signal in the middle, then resumed: the same trials, the same numbers.
    with pytest.raises(Interrupted):
        _fit(config, tmp_path / "parts", on_chunk=_signal_at(signal.SIGTERM, 5))
    parts = _resume(tmp_path / "parts")
    chex.assert_trees_all_equal(straight.params, parts.params)
    assert parts.metrics["history"] == straight.metrics["history"]
    assert parts.metrics["sweep"] == straight.metrics["sweep"]
    evaluated = runs.evaluate_run(tmp_path / "parts")
    assert [m["val_acc"] for m in evaluated["models"]] == pytest.approx(
        [m["val_acc"] for m in straight.metrics["models"]]
    )


def test_bfloat16_computes_with_float32_master_weights(tmp_path):
    base = TrainConfig(iters=200, eval_every=100)
    plain = _fit(base)
    half = _fit(dataclasses.replace(base, compute_dtype="bfloat16"), tmp_path)
    assert {v.dtype for v in _params(tmp_path).values()} == {np.dtype(np.float32)}
    assert half.metrics["run"]["models"][0]["lr"] == 0.1
    assert half.metrics["history"][1]["loss"] < half.metrics["history"][0]["loss"]
    assert half.metrics["final"]["test_acc"] == pytest.approx(
        plain.metrics["final"]["test_acc"], abs=0.03
    )
    assert not np.array_equal(half.params["W1"], plain.params["W1"])  # it did compute in bf16


# --- the run folder: one writer, its space, its writes, its data ----------------------


def test_an_interval_cut_by_a_checkpoint_and_a_resume_averages_all_its_steps(tmp_path, monkeypatch):
    # Rows every 60 iterations, checkpoints every 20, chunks of 10: the stop at 20 falls
    # inside an interval, and the resumed row's loss averages the steps before it too.
    planned = train.ChunkPlanner.next
    monkeypatch.setattr(train.ChunkPlanner, "next", lambda self, i: min(planned(self, i), 10))
    config = TrainConfig(iters=120, eval_every=60)
    with pytest.raises(Interrupted) as e:
        _fit(config, tmp_path / "run", checkpoint_every=20, on_chunk=_signal_at(signal.SIGINT, 20))
    assert e.value.iteration == 20
    kept = runs.load_checkpoint(tmp_path / "run")
    assert kept.iteration == e.value.iteration and len(kept.pending) == kept.iteration % 60
    done = _resume(tmp_path / "run", checkpoint_every=20)
    straight = _fit(config, tmp_path / "straight", checkpoint_every=20)
    assert done.metrics["history"] == straight.metrics["history"]  # loss included
    chex.assert_trees_all_equal(done.params, straight.params)


def test_a_second_run_on_a_running_folder_is_refused_and_the_lock_lasts_to_metrics_json(
    tmp_path, monkeypatch
):
    out, refused, seen = tmp_path / "run", [], []

    def second(i):
        if not refused:
            for attempt in (lambda: _fit(TrainConfig(iters=40, seed=1), out), lambda: _resume(out)):
                with pytest.raises(runs.RunError) as e:
                    attempt()
                refused.append(str(e.value))

    write_run = runs.write_run

    def watched(folder, *args, **kwargs):
        write_run(folder, *args, **kwargs)
        seen.append((folder / runs.LOCK).read_text())  # still held after metrics.json

    monkeypatch.setattr(runs, "write_run", watched)
    _fit(TrainConfig(iters=80, eval_every=40), out, checkpoint_every=20, on_chunk=second)
    pid = os.getpid()
    assert refused[0].startswith(f"out {out} is in use by funcbp process {pid} (its lock is")
    assert refused[1].startswith(f"resume {out} is in use by funcbp process {pid}")
    assert seen == [f"{pid}\n"]
    assert not (out / runs.LOCK).exists() and (out / "metrics.json").is_file()


def test_a_full_disk_is_refused_before_anything_compiles(tmp_path, monkeypatch):
    from funcbp import engine

    real = os.statvfs

    def full(path):
        s = real(path)
        return os.statvfs_result((*s[:4], 0, *s[5:]))  # f_bavail: nothing free

    monkeypatch.setattr(os, "statvfs", full)
    monkeypatch.setattr(engine.Engine, "_compile", lambda *a: pytest.fail("compiled"))
    out = tmp_path / "deep" / "run"
    with pytest.raises(runs.RunError, match=rf"^out {out} has 0 bytes free; this needs about"):
        _fit(TrainConfig(iters=40), out)
    assert list(tmp_path.iterdir()) == []


def _no_space(f):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the kernel says it


@pytest.mark.parametrize("failing", ["checkpoint-000000040.npz", "checkpoint.json"])
def test_a_write_that_fails_mid_run_names_the_file_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, failing
):
    write, calls = runs.atomic_write, []
    nth = 2 if failing == "checkpoint.json" else 1  # the second checkpoint fails

    def full_disk(path, body):
        calls.append(path.name)
        return write(path, _no_space if calls.count(failing) == nth else body)

    monkeypatch.setattr(runs, "atomic_write", full_disk)
    monkeypatch.setattr(runs, "atomic_write_text", lambda p, t: full_disk(p, _text(t)))
    out, config = tmp_path / "run", TrainConfig(iters=60, eval_every=20)
    kept = f"kept the checkpoint of iteration 20 in {out}"
    with pytest.raises(OSError) as e:
        _fit(config, out, checkpoint_every=20)
    assert str(e.value) == f"cannot write {out / failing}: No space left on device; {kept}"
    assert runs.load_checkpoint(out).iteration == 20
    monkeypatch.undo()
    done = _resume(out, checkpoint_every=20)
    straight = _fit(config, tmp_path / "straight", checkpoint_every=20)
    assert done.metrics["history"] == straight.metrics["history"]
    chex.assert_trees_all_equal(done.params, straight.params)


def _text(text):
    return lambda f: f.write(text.encode())


def test_a_resume_on_other_data_is_refused_naming_the_data_and_the_file(tmp_path, monkeypatch):
    from funcbp import splits

    out = tmp_path / "run"
    metrics = _fit(TrainConfig(iters=40, eval_every=20), out).metrics
    assert set(metrics["data_sha256"]) == {"train", "test"}
    assert runs.load_checkpoint(out).record["data_sha256"] == metrics["data_sha256"]
    load = splits.load_for_model

    def shuffled_labels(*args):
        (x, t), test = load(*args)
        return (x, np.roll(t, 1)), test

    monkeypatch.setattr(splits, "load_for_model", shuffled_labels)
    other = rf"^resume {out}: the train set of --data mnist-5k is not the data this run trained on"
    with pytest.raises(runs.RunError, match=rf"{other} .*{out / 'checkpoint.json'} records"):
        _resume(out, {"iters": 80})
    assert runs.load_checkpoint(out).iteration == 40 and not (out / runs.LOCK).exists()


def test_an_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(runs.RunError, match=r"^out: expected a folder, got ''$"):
        _fit(TrainConfig(iters=20), "")
    assert list(tmp_path.iterdir()) == []
