"""Test helpers shared by the layer modules' tests."""

import os

import jax
import numpy as np
import pytest

from funcbp.gradcheck import _CPU_COMPILE_OPTIONS

# funcbp gradcheck's compile options as XLA_FLAGS: the suite's programs compile this way.
QUICK_XLA_FLAGS = " ".join(f"--{k}={str(v).lower()}" for k, v in _CPU_COMPILE_OPTIONS.items())


def rng(seed=0):
    return np.random.default_rng(seed)


def four_cpu_devices_env(devices=4):
    """os.environ for a child process on ``devices`` forced CPU devices, compiling quickly.

    The compile options are funcbp.gradcheck's: a test's programs run once or twice on
    small inputs, so XLA's code generation is most of their time (half, unoptimized).
    They change how XLA generates CPU code, not what JAX traces, shards or partitions.
    """
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {QUICK_XLA_FLAGS}",
    }


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
