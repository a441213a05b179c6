"""The funcbp command, called through main(argv) as a user would."""

import json

import pytest

from funcbp import checks, reference
from funcbp.cli import main
from tests.test_gradcheck import _leaky_relu_rule


def test_gradcheck_json_to_stdout(capsys):
    assert main(["gradcheck", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["dtype"] == "float64"
    names = [c["name"] for c in report["checks"]]
    assert names[:8] == [
        "mul", "add", "relu", "sigmoid", "affine", "softmax", "cross_entropy_error",
        "softmax_with_loss",
    ]  # fmt: skip
    for c in report["checks"]:
        assert c["ok"] is True
        assert set(c["manual_vs_autodiff"]) >= {"max_abs", "max_rel"}
        assert c["manual_vs_numerical"]["max_rel"] < 1e-4


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
