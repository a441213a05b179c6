"""Strict JAX for every test: float64 available, rank and dtype promotion raise.

float32 tests ask for float32 explicitly; with x64 on, jnp's defaults are float64.
Tests marked ``slow`` (subprocesses, whole runs, the bench) are skipped by
``pytest -m "not slow"``, which takes under a minute; the full suite runs them all.
"""

import os

from tests.cases import QUICK_XLA_FLAGS

# Each test's programs run once or twice on small inputs, so compiling is most of the
# suite's time: compile as funcbp gradcheck does (unoptimized code generation, 3-4x
# faster to compile). This changes how XLA generates CPU code, not what JAX traces,
# shards or differentiates; child processes inherit it.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_XLA_FLAGS}".strip()

import jax  # after XLA_FLAGS: the backend reads them when it starts

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
