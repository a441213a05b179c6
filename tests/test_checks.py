"""The table of checks that the tests, the CLI and experiments share, and tables of one's own."""

import re
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import reference
from funcbp.checks import CHECKS, Check, load_table, run_checks
from funcbp.cli import main
from funcbp.testing import assert_rule


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("row", CHECKS, ids=lambda c: c.name)
def test_every_row_passes_every_comparison(row, dtype):
    args = row.make_args(np.random.default_rng(0), dtype)
    report = assert_rule(
        row.manual, row.reference, *args, argnums=row.argnums, name=row.name, **row.options
    )
    assert report.dtype == dtype


def test_run_checks_selects_rows_and_rejects_unknown_names():
    results = run_checks(jnp.float64, ["relu", "affine"], vmap=False, second_order=False)
    assert [r.name for r in results] == ["relu", "affine"]
    assert results[0]["vmap"].status == "skipped"  # the options reach every row
    with pytest.raises(ValueError, match=r"names must be among .*got nope"):
        run_checks(jnp.float64, ["nope"])


def _sigmoid_args(rng, dtype):
    return (jnp.asarray(rng.standard_normal((3, 4)), dtype),)


MY_TABLE = (
    # The row syntax of funcbp's own table; options are the row's compare_gradients options.
    Check("my_sigmoid", funcbp.sigmoid, reference.sigmoid, _sigmoid_args),
    Check(
        "my_sigmoid_quick",
        funcbp.sigmoid,
        reference.sigmoid,
        _sigmoid_args,
        argnums=(0,),
        options={"second_order": False, "mode": "directional"},
    ),
)


def test_a_table_of_ones_own_runs_with_its_rows_options():
    plain, quick = run_checks("float32", table=MY_TABLE, seed=3)
    assert plain.ok and quick.ok and plain.dtype == "float32"
    assert plain.settings["seed"] == 3 and plain["second_order"].status == "ok"
    assert quick["second_order"].status == "skipped" and quick.settings["mode"] == "directional"
    # An option given to the run overrides the row's own.
    assert MY_TABLE[1].run(second_order=True)["second_order"].status == "ok"


def test_load_table_imports_module_colon_name(tmp_path, monkeypatch):
    (tmp_path / "my_rows.py").write_text(
        "from tests.test_checks import MY_TABLE\nROWS = MY_TABLE\nNOT_ROWS = [1, 'x']\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_rows", raising=False)
    assert load_table("my_rows:ROWS") == MY_TABLE  # found in the current directory


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("tests.test_checks", ValueError, "--table must look like mypkg.mymodule:CHECKS, got"),
        (
            "no_such_module_here:CHECKS",
            ValueError,
            "importing no_such_module_here raised ModuleNotFoundError",
        ),
        ("tests.test_checks:NOPE", ValueError, "module tests.test_checks has no NOPE"),
        (
            "tests.test_checks:CHECKS_OF_TUPLES",
            TypeError,
            "must hold funcbp.Check rows only, got tuple",
        ),
        (
            "tests.test_checks:_sigmoid_args",
            TypeError,
            "must be a sequence of funcbp.Check rows, got function",
        ),
        ("tests.test_checks:TWICE", ValueError, "names each row once; my_sigmoid appear"),
    ],
)
def test_load_table_errors_name_the_table(spec, error, message):
    with pytest.raises(error, match=message):
        load_table(spec)


CHECKS_OF_TUPLES = ((1, 2),)
TWICE = (MY_TABLE[0], MY_TABLE[0])


def test_the_docs_example_runs_as_the_docs_say(tmp_path, monkeypatch, capsys):
    docs = (Path(__file__).parent.parent / "docs" / "checking.md").read_text()
    code = re.search(r"```python\n(# mylayers\.py\n.+?)```", docs, re.S)[1]
    shown = re.search(r"```text\n(funcbp gradcheck \(float64\).+?)```", docs, re.S)[1]
    (tmp_path / "mylayers.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mylayers", raising=False)
    assert main(["gradcheck", "--table", "mylayers:CHECKS"]) == 0
    out = capsys.readouterr().out
    # The numbers of the differences are rounding, which varies; the words do not.
    assert [line.split()[:2] for line in out.splitlines()] == [
        line.split()[:2] for line in shown.splitlines()
    ]
    assert out.splitlines()[-2:] == shown.splitlines()[-2:]
