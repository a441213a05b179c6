"""Gradient checking: numerical differentiation and manual-vs-reference reports.

These are tools only; they know nothing of the layers. The table of what is
checked lives in :mod:`funcbp.checks`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

__all__ = [
    "TOLERANCES",
    "ArgumentCheck",
    "ErrorStats",
    "GradientCheck",
    "compare_gradients",
    "numerical_gradient",
]

# (rtol, atol) per dtype, for |manual - other| <= atol + rtol * |other|.
# Autodiff differs from a correct rule only by rounding. Central differences
# carry O(h^2) truncation plus eps * |f| / h rounding, so float32 uses a larger
# step and looser bounds than float64.
TOLERANCES = {
    "float64": {"autodiff": (1e-9, 1e-12), "numerical": (1e-5, 1e-7), "h": 1e-4},
    "float32": {"autodiff": (1e-5, 1e-6), "numerical": (5e-2, 1e-3), "h": 1e-2},
}


def numerical_gradient(f: Callable[[Any], Array], x: Any, h: float = 1e-4) -> Any:
    """Central differences ``(f(x + h) - f(x - h)) / 2h``, one element at a time.

    Pure and jittable; perturbations are evaluated in vmapped batches.

    Args:
        f: scalar-valued function of ``x``.
        x: a float array or a pytree of float arrays (e.g. a params dict).
        h: the step, as in the book.

    Returns:
        The gradient, with x's structure, shapes and dtypes.
    """
    leaves = jax.tree_util.tree_leaves(x)
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"x must hold floating-point arrays, got dtype {jnp.result_type(leaf)}")
    # One flat vector, so a whole params dict is one vmapped loop, compiled once.
    flat, unravel = ravel_pytree(x)
    step = jnp.asarray(h, flat.dtype)

    def partial(i):
        e = jnp.zeros_like(flat).at[i].set(step)
        return (f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * step)

    grads = jax.lax.map(partial, jnp.arange(flat.size), batch_size=min(flat.size, 256))
    return unravel(grads.astype(flat.dtype))


@dataclass(frozen=True)
class ErrorStats:
    """How far the manual gradient is from another, over one or more arrays.

    ``max_rel`` is ``max |manual - other| / (|other| + atol)``; ``mean_abs`` is
    the book's ``mean |backprop - numerical|``.
    """

    max_abs: float
    max_rel: float
    mean_abs: float
    ok: bool

    @classmethod
    def between(cls, manual: Array, other: Array, rtol: float, atol: float) -> ErrorStats:
        m = np.asarray(manual, np.float64)
        o = np.asarray(other, np.float64)
        diff = np.abs(m - o)
        if diff.size == 0:
            return cls(0.0, 0.0, 0.0, True)
        ok = bool(np.all(np.isfinite(m)) and np.all(diff <= atol + rtol * np.abs(o)))
        return cls(
            float(diff.max()), float((diff / (np.abs(o) + atol)).max()), float(diff.mean()), ok
        )

    @classmethod
    def worst(cls, stats: Sequence[ErrorStats]) -> ErrorStats:
        return cls(
            max(s.max_abs for s in stats),
            max(s.max_rel for s in stats),
            max(s.mean_abs for s in stats),
            all(s.ok for s in stats),
        )

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_abs": self.mean_abs,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class ArgumentCheck:
    """The check of one argument (or one parameter, e.g. ``W1``)."""

    name: str
    shape: tuple[int, ...]
    manual_vs_autodiff: ErrorStats
    manual_vs_numerical: ErrorStats

    @property
    def ok(self) -> bool:
        return self.manual_vs_autodiff.ok and self.manual_vs_numerical.ok


@dataclass(frozen=True)
class GradientCheck:
    """The check of one function: per-argument stats and their worst case."""

    name: str
    dtype: str
    arguments: tuple[ArgumentCheck, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.arguments)

    @property
    def manual_vs_autodiff(self) -> ErrorStats:
        return ErrorStats.worst([a.manual_vs_autodiff for a in self.arguments])

    @property
    def manual_vs_numerical(self) -> ErrorStats:
        return ErrorStats.worst([a.manual_vs_numerical for a in self.arguments])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "dtype": self.dtype,
            "manual_vs_autodiff": self.manual_vs_autodiff.to_dict(),
            "manual_vs_numerical": self.manual_vs_numerical.to_dict(),
            "arguments": [
                {
                    "name": a.name,
                    "shape": list(a.shape),
                    "ok": a.ok,
                    "manual_vs_autodiff": a.manual_vs_autodiff.to_dict(),
                    "manual_vs_numerical": a.manual_vs_numerical.to_dict(),
                }
                for a in self.arguments
            ],
        }


def _is_floating(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves)


def _argument_names(f: Callable, count: int) -> list[str]:
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


def compare_gradients(
    manual: Callable[..., Array],
    reference: Callable[..., Array],
    args: Sequence[Any],
    *,
    argnums: int | Sequence[int] | None = None,
    name: str | None = None,
    h: float | None = None,
    seed: int = 0,
) -> GradientCheck:
    """Checks a function built from funcbp layers against its autodiff twin.

    The manual gradient (``jax.grad`` through the hand-written rules) is
    compared with ``jax.grad`` of ``reference`` and with
    :func:`numerical_gradient` of ``manual``. A non-scalar output is reduced
    with a fixed random cotangent, so the rules see a non-trivial ``dout``.
    Tolerances and the default step come from :data:`TOLERANCES` for the
    arguments' dtype.

    Args:
        manual: the function whose backward rules are checked.
        reference: the same function in plain jnp, with the same signature.
        args: positional arguments; pytrees (a params dict) are checked per leaf.
        argnums: the arguments to differentiate; by default every floating one.
        name: the name in the report; by default ``manual.__name__``.
        h: the finite-difference step; by default 1e-4 in float64, 1e-2 in float32.
        seed: seeds the random cotangent.

    Returns:
        A :class:`GradientCheck` with max absolute, max relative and mean
        absolute errors per argument, and ``ok``.
    """
    args = tuple(args)
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if _is_floating(a))
    elif isinstance(argnums, int):
        argnums = (argnums,)
    argnums = tuple(argnums)
    if not argnums:
        raise ValueError("args must contain at least one floating-point argument to check")
    for i in argnums:
        if not 0 <= i < len(args) or not _is_floating(args[i]):
            raise ValueError(f"argnums must name floating-point arguments, got {i}")

    dtypes = {jnp.result_type(x) for i in argnums for x in jax.tree_util.tree_leaves(args[i])}
    dtype = jnp.dtype(max(dtypes, key=lambda d: jnp.dtype(d).itemsize)).name
    if dtype not in TOLERANCES:
        raise TypeError(f"args must be float32 or float64 to check, got {dtype}")
    tolerance = TOLERANCES[dtype]
    step = tolerance["h"] if h is None else h

    out = jax.eval_shape(manual, *args)
    cotangent = jnp.asarray(np.random.default_rng(seed).standard_normal(out.shape), out.dtype)

    def scalarize(fn):
        return lambda *a: jnp.sum(fn(*a) * cotangent)

    def gradients(*args):
        def numerical(i):
            def at(value):
                return scalarize(manual)(*args[:i], value, *args[i + 1 :])

            return numerical_gradient(at, args[i], step)

        return (
            jax.grad(scalarize(manual), argnums)(*args),
            jax.grad(scalarize(reference), argnums)(*args),
            tuple(numerical(i) for i in argnums),
        )

    # One compiled program per check: op-by-op dispatch would dominate the time.
    all_grads = jax.jit(gradients)(*args)

    names = _argument_names(manual, len(args))
    checks = []
    for i, g_manual, g_reference, g_numerical in zip(argnums, *all_grads, strict=True):
        flat = jax.tree_util.tree_flatten_with_path(g_manual)[0]
        for (path, m), r, n in zip(
            flat,
            jax.tree_util.tree_leaves(g_reference),
            jax.tree_util.tree_leaves(g_numerical),
            strict=True,
        ):
            leaf_name = jax.tree_util.keystr(path, simple=True, separator=".") or names[i]
            checks.append(
                ArgumentCheck(
                    leaf_name,
                    tuple(m.shape),
                    ErrorStats.between(m, r, *tolerance["autodiff"]),
                    ErrorStats.between(m, n, *tolerance["numerical"]),
                )
            )
    return GradientCheck(name or getattr(manual, "__name__", "function"), dtype, tuple(checks))
