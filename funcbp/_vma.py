"""Cotangents typed like their primals inside ``jax.shard_map``: the one place rules meet meshes.

Inside ``shard_map`` (with ``check_vma=True``, the default) every value's type
records the mesh axes it varies over. A hand-written rule computes, say,
``dW = x.T @ dout`` from a batch-sharded x: the result varies over the batch
axis, while W itself was replicated (invariant), and JAX refuses a cotangent
whose type differs from its primal's. JAX's own transposes handle this where a
replicated value meets a varying one (the implicit ``pvary``): its transpose is
a ``psum`` over the axes the cotangent varies over and the primal does not.

:func:`defvjp` registers a rule with that same reduction applied to every
cotangent it returns, and, where a cotangent varies over fewer axes than its
primal, the matching ``pcast``. Outside ``shard_map`` no value varies over any
axis, and the rule's cotangents come back as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from jax import lax

__all__ = ["defvjp"]


def _varying(x: Any) -> frozenset[str]:
    return frozenset(jax.typeof(x).mat.varying)


@jax.tree_util.register_static
@dataclass(frozen=True)
class _PrimalAxes:
    """Each differentiable argument's leaves' varying axes: static, so no array is kept."""

    leaves: tuple[tuple[frozenset[str], ...], ...]


def _retype(ct: Any, axes: frozenset[str]) -> Any:
    have = _varying(ct)
    extra = tuple(sorted(have - axes))
    if extra:
        ct = lax.psum(ct, extra)
    missing = tuple(sorted(axes - have))
    if missing:
        ct = lax.pcast(ct, missing, to="varying")
    return ct


def _retyped(cts: tuple[Any, ...], primal: _PrimalAxes) -> tuple[Any, ...]:
    out = []
    for ct, axes in zip(cts, primal.leaves, strict=True):
        leaves, treedef = jax.tree.flatten(ct)
        if len(leaves) != len(axes):
            out.append(ct)  # None: no gradient (labels, a key)
            continue
        out.append(jax.tree.unflatten(treedef, map(_retype, leaves, axes)))
    return tuple(out)


def defvjp(fn: Any, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
    """``fn.defvjp(fwd, bwd)``, with each cotangent typed like its primal under shard_map.

    ``fwd`` and ``bwd`` are written as for ``jax.custom_vjp`` and never see
    mesh axes; the residuals stay exactly what ``fwd`` returns, plus a static
    record of the primals' varying axes. ``fn.forward`` and ``fn.backward``
    are ``fwd`` and ``bwd`` themselves, the book's two methods, for calling a
    layer step by step: ``out, cache = fn.forward(*args)``, then
    ``fn.backward(*static_args, cache, dout)``.
    """
    nondiff = frozenset(fn.nondiff_argnums)

    def typed_fwd(*args):
        out, res = fwd(*args)
        diff = [a for i, a in enumerate(args) if i not in nondiff]
        axes = tuple(tuple(map(_varying, jax.tree.leaves(a))) for a in diff)
        return out, (res, _PrimalAxes(axes))

    def typed_bwd(*args):
        *static, (res, primal), dout = args
        return _retyped(tuple(bwd(*static, res, dout)), primal)

    fn.defvjp(typed_fwd, typed_bwd)
    fn.forward, fn.backward = fwd, bwd
