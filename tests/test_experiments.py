"""The book's experiments, each through ``funcbp experiment NAME --quick`` as a user runs it.

Each run must write its figure, its results and one line per claim. No test asserts
that a claim held: that depends on the data. The numbers behind them are checked
where they have a closed form.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import matplotlib.image
import numpy as np
import pytest

from funcbp.cli import main
from funcbp.experiments import EXPERIMENTS
from funcbp.zoo import deep_convnet, simple_convnet

SCRIPTS = Path(__file__).parent.parent / "experiments"


def _exit_status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


def _one_line_error(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def _params_file(tmp_path, net, name) -> str:
    params = net.init(jax.random.key(0))
    path = tmp_path / f"{name}.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in params.items()})
    return str(path)


def _run(argv, out, capsys) -> dict:
    assert main(["experiment", *argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    results = json.loads((out / "results.json").read_text())
    image = matplotlib.image.imread(out / "figure.png")
    assert image.ndim == 3 and min(image.shape[:2]) > 200 and image.std() > 0  # drawn, not blank
    lines = (out / "claims.txt").read_text().splitlines()
    assert len(lines) == len(results["claims"]) >= 1
    for line, claim in zip(lines, results["claims"], strict=True):
        verdict = {True: "held: ", False: "NOT held: ", None: "measured: "}[claim["held"]]
        assert line.startswith(verdict) and claim["claim"] in line and claim["numbers"] in line
        assert line in printed
    assert results["settings"]["name"] == argv[0] and results["seconds"] > 0
    return results


def test_the_list_names_each_experiment_and_its_script(capsys):
    assert main(["experiment", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(EXPERIMENTS)
    for line, e in zip(lines, EXPERIMENTS.values(), strict=True):
        assert line.split()[:2] == [e.name, e.script]
        assert (SCRIPTS / e.script.replace("/", "_")).is_file(), e.script  # its thin script


def test_optimizer_paths(tmp_path, capsys):
    results = _run(["optimizer-paths", "--quick"], tmp_path / "out", capsys)
    paths = {k: np.asarray(v) for k, v in results["paths"].items()}
    assert list(paths) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    assert all(p.shape == (30, 2) for p in paths.values())
    # SGD on x²/20 + y²: x <- (1 - lr/10) x, y <- (1 - 2 lr) y, from (-7, 2).
    k = np.arange(30)
    expected = np.stack([-7.0 * (1 - 0.095) ** k, 2.0 * (1 - 1.9) ** k], axis=1)
    np.testing.assert_allclose(paths["SGD"], expected, rtol=1e-5, atol=1e-6)


def test_init_activations(tmp_path, capsys):
    results = _run(["init-activations", "--quick", "--seeds", "2"], tmp_path / "out", capsys)
    assert len(results["panels"]) == 6
    for panel in results["panels"]:
        counts = np.asarray(panel["counts"])
        assert counts.shape == (2, 5, 30)  # seeds, layers, bins
        total = counts.sum(axis=2)
        if panel["activation"] == "sigmoid":  # every value lies in (0, 1)
            assert (total == 1000 * 100).all()
        else:
            assert (total <= 1000 * 100).all()
            # ReLU zeroes half of the first layer's values (its input is symmetric).
            np.testing.assert_allclose(np.asarray(panel["zero"])[:, 0], 0.5, atol=0.01)
    assert results["panels"][0]["counts"][0] != results["panels"][0]["counts"][1]  # two seeds


def test_filters_from_a_params_file(tmp_path, capsys):
    params = _params_file(tmp_path, simple_convnet, "simple")
    results = _run(["filters", "--quick", "--params", params], tmp_path / "out", capsys)
    assert results["source"] == {"kind": "params", "path": params}
    assert np.asarray(results["W1_after"]).shape == (30, 1, 5, 5)
    np.testing.assert_allclose(results["W1_after"], np.load(params)["W1"], rtol=1e-6)


@pytest.mark.slow
def test_filters_trained_here(tmp_path, capsys):
    results = _run(["filters", "--quick"], tmp_path / "out", capsys)
    assert results["source"]["kind"] == "trained here"
    assert (tmp_path / "out" / "train" / "metrics.json").is_file()  # the engine's run folder
    assert results["relative_change"][0] > 0


@pytest.mark.slow
def test_misclassified(tmp_path, capsys):
    params = _params_file(tmp_path, deep_convnet, "deep")
    results = _run(["misclassified", "--quick", "--params", params], tmp_path / "out", capsys)
    assert results["test_size"] == 500 and len(results["digits"]) == 20
    for d in results["digits"]:
        assert d["label"] != d["prediction"] and np.asarray(d["pixels"]).shape == (28, 28)
    indices = [d["index"] for d in results["digits"]]
    assert indices == sorted(indices)  # the first ones, in test-set order


@pytest.mark.slow
def test_half_float(tmp_path, capsys):
    params = _params_file(tmp_path, deep_convnet, "deep")
    results = _run(["half-float", "--quick", "--params", params], tmp_path / "out", capsys)
    assert results["dtypes"] == ["float64", "float32", "float16", "bfloat16"]
    assert results["changed_predictions"]["float64"] == [0]
    assert all(0 <= a[0] <= 1 for a in results["accuracy"].values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such"], "NAME must be one of optimizer-paths"),
        ([], "give NAME"),
        (["init-activations", "--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
        (["optimizer-paths", "--seeds", "3"], "--seeds does not apply: optimizer-paths"),
        (["optimizer-paths", "--params", "p.npz"], "--params and --run-dir apply to"),
        (["init-activations", "--data", "mnist"], "--data does not apply: init-activations"),
        (["filters", "--data", "mnsit"], "--data must be mnist-5k or mnist or a folder"),
        (["filters", "--params", "missing.npz"], "--params must be an existing file"),
        (["filters", "--run-dir", "missing"], "--run-dir must be an existing folder"),
        (["init-activations", "--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
        (["optimizer-paths", "--resume", "x"], "--resume x: no experiment.json there"),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    assert _exit_status(["experiment", *argv]) == 2
    _one_line_error(capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing made


def test_a_params_file_of_another_model_is_refused_before_any_work(tmp_path, capsys):
    params = _params_file(tmp_path, simple_convnet, "simple")
    out = tmp_path / "out"
    assert _exit_status(["experiment", "misclassified", "--params", params, "--out", str(out)]) == 2
    _one_line_error(capsys, "does not fit deep-convnet")
    assert not out.exists()


def test_a_used_folder_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert _exit_status(["experiment", "optimizer-paths", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "already holds files")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def _claim_lines(results, count):
    assert len(results["claims"]) == count
    return [c["claim"] for c in results["claims"]]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_optimizers(tmp_path, capsys):
    results = _run(["optimizers", "--quick", "--seeds", "2"], tmp_path / "out", capsys)
    assert list(results["loss"]) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    assert all(np.asarray(v).shape == (2, 3) for v in results["loss"].values())  # seeds, rows
    assert results["iters"] == [20, 40, 60]
    _claim_lines(results, 2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_init(tmp_path, capsys):
    results = _run(["init", "--quick", "--seeds", "2"], tmp_path / "out", capsys)
    assert list(results["loss"]) == ["std=0.01", "Xavier", "He"]
    loss = np.asarray(results["loss"]["std=0.01"])
    assert loss.shape == (2, 3) and (np.abs(loss - np.log(10)) < 0.1).all()  # barely moves
    assert (tmp_path / "out" / "train" / "sweep.json").is_file()  # one program, a sweep
    _claim_lines(results, 2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_batch_norm(tmp_path, capsys):
    results = _run(["batch-norm", "--quick", "--seeds", "2"], tmp_path / "out", capsys)
    np.testing.assert_allclose(results["scales"], np.logspace(0, -4, 16))
    for name in ("batch_norm", "normal"):
        acc = np.asarray(results["train_acc"][name])
        assert acc.shape == (16, 2, 3) and ((acc >= 0) & (acc <= 1)).all()
    speed = results["speed"]
    assert speed["funcbp_models"] == 64 and speed["ratio"] > 0
    assert [b["models"] for b in speed["book"]] == [2, 2]
    assert results["claims"][1]["held"] is None


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("name", "option", "values"),
                         [("weight-decay", "weight_decay", [0.0, 0.1]),
                          ("dropout", "dropout", [0.0, 0.2])])  # fmt: skip
def test_overfitting(name, option, values, tmp_path, capsys):
    results = _run([name, "--quick", "--seeds", "2"], tmp_path / "out", capsys)
    assert results["option"] == option and results["values"] == values
    assert results["epochs"] == [1.0, 2.0, 3.0, 4.0, 5.0]  # 300 digits, batch 100
    for key in ("train_acc", "test_acc"):
        assert np.asarray(results[key]).shape == (2, 2, 5)  # values, seeds, epochs
    _claim_lines(results, 1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hyperparameters(tmp_path, capsys):
    results = _run(["hyperparameters", "--quick"], tmp_path / "out", capsys)
    trials = results["trials"]
    assert len(trials) == 10 and sorted(t["trial"] for t in trials) == list(range(10))
    assert [t["val_acc"] for t in trials] == sorted((t["val_acc"] for t in trials), reverse=True)
    for t in trials:
        assert 1e-6 <= t["lr"] <= 1e-2 and 1e-8 <= t["weight_decay"] <= 1e-4
        assert np.asarray(t["val_curve"]).shape == (1, 10)  # seeds, epochs
    assert results["speed"]["ratio"] > 0 and results["speed"]["funcbp_trials"] == 10
    assert results["claims"][2]["held"] is None  # the speed: a measurement, no claim


def _experiment_process(argv):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "funcbp.cli", "experiment", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_stops_hyperparameters_with_one_line_and_resume_finishes(tmp_path):
    out = tmp_path / "out"
    child = _experiment_process(["hyperparameters", "--quick", "--out", str(out)])
    for line in child.stdout:  # the engine's first log line: training is under way
        if line.startswith("iter "):
            break
    else:
        pytest.fail(f"no log line; stderr: {child.stderr.read()}")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("funcbp experiment: stopped by SIGTERM"), err
    assert lines[0].endswith(f"resume with funcbp experiment --resume {out}"), err
    assert not (out / "results.json").exists()
    again = _experiment_process(["--resume", str(out)])
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]) == 10 and results["settings"]["quick"]
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["run"]["iters"] == 40 and len(metrics["history"]) == 10


@pytest.mark.slow
def test_sigterm_before_any_training_stops_with_one_line_and_resume_finishes(tmp_path):
    """init-activations trains nothing: the signal ends the process at once, via supervise."""
    out = tmp_path / "out"
    child = _experiment_process(["init-activations", "--quick", "--out", str(out)])
    while not (out / "experiment.json").is_file():  # the settings are written first
        assert child.poll() is None, child.stderr.read()
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    if child.returncode == 0:
        pytest.skip("the run finished before the signal came")
    assert child.returncode == 128 + signal.SIGTERM, err
    assert err.count("\n") == 1 and "funcbp experiment: stopped by SIGTERM" in err, err
    assert not (out / "results.json").exists()
    again = _experiment_process(["--resume", str(out)])
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert len(json.loads((out / "results.json").read_text())["panels"]) == 6
