"""Strict JAX for every test: float64 available, rank and dtype promotion raise.

float32 tests ask for float32 explicitly; with x64 on, jnp's defaults are float64.
Tests marked ``slow`` (subprocesses, whole runs, the bench) are skipped by
``pytest -m "not slow"``, which takes under a minute; the full suite runs them all.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
