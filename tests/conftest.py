"""Strict JAX for every test: float64 available, rank promotion raises.

float32 tests ask for float32 explicitly; with x64 on, jnp's defaults are float64.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
