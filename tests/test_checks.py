"""The table of checks that the tests, the CLI and experiments share."""

import jax.numpy as jnp
import pytest

from funcbp.checks import CHECKS, run_checks


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_row_passes(dtype):
    results = run_checks(dtype)
    assert [r.name for r in results] == [c.name for c in CHECKS]
    assert all(r.dtype == dtype for r in results)
    failed = [(r.name, r.to_dict()) for r in results if not r.ok]
    assert not failed


def test_run_checks_selects_rows_and_rejects_unknown_names():
    assert [r.name for r in run_checks(jnp.float64, ["relu", "affine"])] == ["relu", "affine"]
    with pytest.raises(ValueError, match=r"names must be among .*got nope"):
        run_checks(jnp.float64, ["nope"])
