"""Test helpers shared by the layer modules' tests."""

import jax
import numpy as np
import pytest


def rng(seed=0):
    return np.random.default_rng(seed)


def vjp(fn, args, dout):
    """fn(*args) and its pullback of dout, in one compiled program (eager dispatch is slower)."""

    def both(args, dout):
        out, pullback = jax.vjp(fn, *args)
        return out, pullback(dout)

    return jax.jit(both)(args, dout)


def bad_input_test(table):
    """One parametrized test over ``(case, call, error, message)`` rows: each call raises that."""

    @pytest.mark.parametrize(("case", "call", "error", "message"), table, ids=[c[0] for c in table])
    def test_bad_input_raises_naming_the_argument(case, call, error, message):
        with pytest.raises(error, match=message):
            call()

    return test_bad_input_raises_naming_the_argument
