"""The funcbp command, called through main(argv) as a user would."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from funcbp import checks, reference
from funcbp.cli import main
from tests.test_gradcheck import _leaky_relu_rule


def test_gradcheck_json_to_stdout(capsys):
    assert main(["gradcheck", "--json", "-", "--only", "softmax_with_loss", "two_layer"]) == 0
    report = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert report["ok"] is True and report["dtype"] == "float64"
    assert [c["name"] for c in report["checks"]] == ["softmax_with_loss", "two_layer"]
    for c in report["checks"]:
        assert c["ok"] is True
        assert set(c["manual_vs_autodiff"]) >= {"max_abs", "max_rel"}
        assert c["manual_vs_numerical"]["max_rel"] < 1e-4
    assert [a["name"] for a in report["checks"][1]["arguments"]] == ["W1", "W2", "b1", "b2", "x"]


def test_gradcheck_float32_table_and_json_file(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["gradcheck", "--dtype", "float32", "--json", str(out), "--only", "affine"]) == 0
    table = capsys.readouterr().out
    assert "affine" in table and "W" in table and "1/1 checks passed" in table
    report = json.loads(out.read_text())
    assert report["dtype"] == "float32" and report["checks"][0]["dtype"] == "float32"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_gradcheck_exits_1_when_a_rule_is_wrong(monkeypatch, capsys):
    broken = checks.Check(
        "leaky", _leaky_relu_rule, reference.relu, checks.LAYER_CHECKS[2].make_args
    )
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS[:1], broken))
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "failed: leaky" in out and "NO" in out


def test_gradcheck_unknown_name_is_one_line(capsys):
    assert main(["gradcheck", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "names must be among" in err and "Traceback" not in err


def test_unknown_dtype_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--dtype", "float16"])
    assert exc.value.code == 2
    assert "invalid choice: 'float16'" in capsys.readouterr().err


# --- train / evaluate ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0"], "lr must be > 0, got 0.0"),
        (["--lr", "-0.5"], "lr must be > 0"),
        (["--batch-size", "0"], "batch_size must be > 0, got 0"),
        (["--batch-size", "4001"], "batch_size must be at most the training set's size 4000"),
        (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
        (["--hidden", "0"], "argument --hidden: hidden sizes must be positive"),
        (["--hidden", "50,,"], "argument --hidden: expected widths like 50 or 100,100"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--iters", "0"], "iters must be > 0"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--resume", "/no/such/run"], "checkpoint.json"),
    ],
)
def test_train_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert _exit_status(["train", "--quiet", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def _exit_status(argv) -> int:
    # argparse's own errors leave by SystemExit; ours return the status.
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_train_on_a_corrupt_idx_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (folder / name).write_bytes(b"\x00\x00\x08\x03garbage")
    assert main(["train", "--quiet", "--data", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images-idx3-ubyte" in err


def test_train_then_evaluate_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--quiet", "--iters", "80", "--eval-every", "40", "--out", str(out)]
    assert main(args) == 0
    assert "final: train acc" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json", "-"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert evaluated["test_acc"] == pytest.approx(metrics["final"]["test_acc"])
    # Extending a finished run continues from its checkpoint.
    assert main(["train", "--quiet", "--resume", str(out), "--iters", "120"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert [h["iter"] for h in resumed["history"]] == [40, 80, 120]
    assert resumed["history"][:2] == metrics["history"]


def test_evaluate_missing_run_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.json" in err


def test_ctrl_c_saves_a_checkpoint_and_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "funcbp.cli", "train", "--iters", "3000", "--eval-every", "40",
         "--out", str(interrupted)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    # Press Ctrl-C once training is under way: after its first per-epoch line.
    first = proc.stdout.readline()
    assert first.lstrip().startswith("iter"), first + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at iteration" in err and "--resume" in err and "Traceback" not in err
    stopped_at = json.loads((interrupted / "checkpoint.json").read_text())["iteration"]
    assert 0 < stopped_at < 3000
    assert not (interrupted / "params.npz").exists()

    assert main(["train", "--quiet", "--resume", str(interrupted)]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--quiet", "--iters", "3000", "--eval-every", "40",
                 "--out", str(straight)]) == 0  # fmt: skip
    a, b = np.load(interrupted / "params.npz"), np.load(straight / "params.npz")
    for k in b.files:
        np.testing.assert_array_equal(a[k], b[k])
