"""The layers of chapter 5 as pure functions with hand-written backward rules.

Each layer reads top to bottom: the primal function, its ``_fwd`` returning
``(out, residuals)``, its ``_bwd(residuals, dout)``, then ``defvjp``. The
residuals are exactly what the book's layer classes cache on ``self``.

Each layer's two halves are public, to call by hand as section 5.4 calls
``forward()`` and ``backward()``: ``out, cache = mul.forward(x, y)`` is the
forward pass and what its backward needs (the book's ``self.x``, ``self.y``),
and ``dx, dy = mul.backward(cache, dout)`` is the backward pass; static
arguments come first, as in ``softmax_with_loss.backward("mean", cache, dout)``.
``relu.forward(x)`` keeps the mask, ``affine.backward(cache, dout)`` returns
``(dx, dW, db)``, and a rule returns None for labels ``t``, which get no
gradient. :func:`funcbp.examples.buy_apple_layers` is the book's example
written this way.

Every rule multiplies by the incoming cotangent ``dout``, so ``grad(3 * f)`` is
three times ``grad(f)``. The rules compose with ``jit``, ``vmap``, ``lax.scan``,
``jax.checkpoint`` and reverse-over-reverse (``grad`` of ``grad``,
``jax.jacrev``, ``jax.hessian``). Each is registered through
:func:`funcbp._vma.defvjp`, so inside ``jax.shard_map`` its cotangents are
typed like their primals (a replicated W gets a reduced dW).

Forward mode does not pass through ``jax.custom_vjp``: ``jax.jvp`` and
``jax.jacfwd`` of these layers raise ``TypeError``. Use reverse mode, or the
twins in :mod:`funcbp.reference`.

Bad input raises ``TypeError`` or ``ValueError`` naming the argument. Shapes
and dtypes are checked always, and mixed dtypes are refused, never promoted.
The values of the labels ``t`` (and softmax_with_loss's +inf logits) are
checked only when concrete: under ``jit`` or ``vmap`` they are used as given.
Arguments that decide shapes or control flow are static Python values; a
traced one is refused by name.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from funcbp import _vma

__all__ = [
    "add",
    "affine",
    "cross_entropy_error",
    "mul",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_with_loss",
]

# The book's guard against log(0) in cross_entropy_error.
CROSS_ENTROPY_DELTA = 1e-7


def _is_weak(x: Array) -> bool:
    """True for a Python scalar (weakly typed), as opposed to an array with its own dtype."""
    return jax.typeof(x).weak_type


def _floating(name: str, x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    # A Python int (the book's mul(100, 2)) has no dtype of its own; integer arrays do.
    if _is_weak(x) and jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.result_type(float))
    raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def _same_dtype(**arrays: Array) -> None:
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{name}: {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{', '.join(dtypes)} must share one dtype, got {got}")


# Arguments that decide shapes or control flow (strides, pads, flags, layouts,
# the reduction) pass through custom_vjp's nondiff_argnums, so they must be
# plain Python values: a bool passed as a stride is a typo, and a traced one
# (an argument of a jitted or vmapped function) has no value to decide with.


def _untraced(name: str, value: object) -> None:
    """Refuses a traced static argument by name; JAX would only say UnexpectedTracerError."""
    traced = [leaf for leaf in jax.tree.leaves(value) if isinstance(leaf, jax.core.Tracer)]
    if traced:
        raise TypeError(
            f"{name} decides shapes or control flow and must be a static Python value, got a "
            f"tracer of {jax.typeof(traced[0]).str_short()}: under jax.jit pass it through "
            f"static_argnums or static_argnames, and do not jax.vmap over it"
        )


def _static_int(name: str, value: object, minimum: int) -> int:
    _untraced(name, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _static_bool(name: str, value: object) -> bool:
    _untraced(name, value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a Python bool, got {value!r} ({type(value).__name__})")
    return value


class _custom_vjp(jax.custom_vjp):
    """``jax.custom_vjp`` that names a bad argument before JAX sees it.

    JAX checks the arguments before any of the rule runs, so the layer's own
    checks would come too late: a traced ``nondiff_argnums`` argument would
    be an UnexpectedTracerError, and a string where an array goes would not
    say which argument it was.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signature = inspect.signature(self.fun)
        names = list(signature.parameters)
        for name, value in signature.bind_partial(*args, **kwargs).arguments.items():
            if names.index(name) in self.nondiff_argnums:
                _untraced(name, value)
                continue
            for leaf in jax.tree.leaves(value):
                try:
                    jax.typeof(leaf)
                except TypeError:
                    raise TypeError(
                        f"{name} must be an array or a number, got {leaf!r} ({type(leaf).__name__})"
                    ) from None
        return super().__call__(*args, **kwargs)


def _hyperparameter(
    name: str, value: object, low: float, high: float, *, high_open: bool
) -> float | Array:
    """A real scalar in [low, high] (or [low, high) with ``high_open``): a value, not a flag.

    A Python number comes back as a float, a JAX or NumPy scalar as an array,
    traced or not, so that ``jit`` and ``vmap`` take it like any other value.
    The interval is checked where the value is concrete; a traced one has no
    value yet to check.
    """
    numbers = int | float | np.generic | np.ndarray | jax.Array
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers):
        raise TypeError(
            f"{name} must be a real number (a Python float or a scalar array), "
            f"got {value!r} ({type(value).__name__})"
        )
    if isinstance(value, int | float):
        number: float | Array = float(value)
    else:
        number = jnp.asarray(value)
        if number.shape != ():
            raise ValueError(f"{name} must be a scalar, got an array of shape {number.shape}")
        if not any(jnp.issubdtype(number.dtype, kind) for kind in (jnp.floating, jnp.integer)):
            raise TypeError(f"{name} must be a real number, got dtype {number.dtype}")
        if isinstance(number, jax.core.Tracer):
            return number
    concrete = float(number)
    if not (low <= concrete < high if high_open else low <= concrete <= high):
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be in {interval}, got {concrete}")
    return number


def _operands(x: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
    """The two inputs of a mul or add node: floats of one shape and dtype, no broadcasting.

    A Python scalar takes the other operand's dtype, as it would in jnp.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    weak_x, weak_y = _is_weak(x), _is_weak(y)
    x, y = _floating("x", x), _floating("y", y)
    if weak_x and not weak_y:
        x = x.astype(y.dtype)
    if weak_y and not weak_x:
        y = y.astype(x.dtype)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    _same_dtype(x=x, y=y)
    return x, y


def _batch(name: str, x: Array) -> None:
    """A mean over the batch, or a row per example, needs N >= 1."""
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example (N >= 1), got N = 0: {x.shape}")


def _scores(name: str, x: Array) -> None:
    """Scores or probabilities of a loss: (N, C) or (C,), with N >= 1 and C >= 1."""
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (N, C) or (C,), got shape {x.shape}")
    if x.ndim == 2:
        _batch(name, x)
    if x.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one class (C >= 1), got C = 0: {x.shape}")


def _labels(x: Array, t: ArrayLike) -> Array:
    """Checks ``t`` against scores or probabilities ``x`` of shape (..., C).

    Shapes and dtypes are always checked. Values are checked only when t is
    concrete (eagerly, and under ``grad``, which does not trace t): under
    ``jit`` or ``vmap`` t is a tracer, and a check would need a host round trip
    or ``checkify`` around every caller.
    """
    t = jnp.asarray(t)
    if t.shape == x.shape:
        if not (jnp.issubdtype(t.dtype, jnp.number) or t.dtype == jnp.bool_):
            raise TypeError(f"one-hot t must be numeric, got dtype {t.dtype}")
        if not isinstance(t, jax.core.Tracer):
            _check_distributions(t)
        return t
    if t.shape == x.shape[:-1]:
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise TypeError(
                f"t of shape {t.shape} holds class indices and must be an integer array, "
                f"got dtype {t.dtype}"
            )
        if not isinstance(t, jax.core.Tracer):
            _check_indices(t, x.shape[-1])
        return t
    raise ValueError(
        f"t must be one-hot with shape {x.shape} or class indices with shape "
        f"{x.shape[:-1]}, got shape {t.shape}"
    )


def _at(index: tuple[int, ...], name: str = "t") -> str:
    return f" at {name}[{', '.join(str(int(i)) for i in index)}]" if index else ""


def _check_indices(t: Array, classes: int) -> None:
    # jax.nn.one_hot turns an index outside 0..C-1 into a zero row: a smaller,
    # plausible loss instead of an error.
    t = np.asarray(t)
    bad = (t < 0) | (t >= classes)
    if bad.any():
        index = tuple(np.argwhere(bad)[0])
        raise ValueError(
            f"t must hold class indices in 0..{classes - 1} (C = {classes}), "
            f"got {t[index]}{_at(index)}"
        )


def _check_distributions(t: Array) -> None:
    # One-hot rows, or distributions as label smoothing makes them. A row
    # summing to 2 doubles its loss, and a zero row drops out of it.
    values = np.asarray(t).astype(np.float64)
    negative = values < 0
    if negative.any():
        index = tuple(np.argwhere(negative)[0])
        raise ValueError(f"one-hot t must be non-negative, got {values[index]}{_at(index)}")
    # A row sum strays from 1 by the rounding of t's own dtype, whatever C is.
    floating = jnp.issubdtype(t.dtype, jnp.floating)
    tolerance = float(np.sqrt(jnp.finfo(t.dtype).eps)) if floating else 0.0
    sums = values.sum(axis=-1)
    off = ~(np.abs(sums - 1) <= tolerance)  # a nan sum is off too
    if off.any():
        index = tuple(np.argwhere(off)[0])
        raise ValueError(
            f"one-hot t rows must sum to 1 (within {tolerance:.1g}; label-smoothed "
            f"distributions are fine), got a row summing to {sums[index]}{_at(index)}"
        )


def _one_hot_like(x: Array, t: Array) -> Array:
    if t.shape == x.shape:
        return t.astype(x.dtype)
    return jax.nn.one_hot(t, x.shape[-1], dtype=x.dtype)


def _as_batch(x: Array, t: Array) -> tuple[Array, Array]:
    """A 1-D x is a batch of one, as in the book."""
    if x.ndim == 1:
        return x[None], t[None]
    return x, t


def _logits(x: Array) -> None:
    """A +inf logit has no softmax (inf - inf): refused where x is concrete."""
    if isinstance(x, jax.core.Tracer):
        return
    bad = np.isposinf(np.asarray(x))
    if bad.any():
        index = tuple(np.argwhere(bad)[0])
        raise ValueError(
            f"x must not hold +inf, which has no softmax (mask a class with -inf instead), "
            f"got +inf{_at(index, 'x')}"
        )


def _some_logit_unmasked(x: Array) -> None:
    """A row of only masked (-inf) logits has no softmax: refused where x is concrete."""
    if isinstance(x, jax.core.Tracer):
        return
    masked = np.all(np.isneginf(np.asarray(x)), axis=-1)
    if masked.any():
        index = tuple(np.argwhere(masked)[0]) if masked.ndim else ()
        raise ValueError(
            f"x must have a logit above -inf in every row, got a row of only -inf"
            f"{_at(index, 'x')}, which has no softmax"
        )


def _log_softmax(x: Array) -> Array:
    """log softmax(x) over the last axis, the max taken out first.

    A row of only masked (-inf) logits has no class to put probability on; it
    gets log 0 = -inf everywhere, as a masked class does. A +inf leaves nan.
    """
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    shifted = x - jnp.where(m == -jnp.inf, 0, m)
    total = jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.where(total == 0, 1, total))


REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction: object) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _reduce(per_example: Array, reduction: str, shape: tuple[int, ...]) -> Array:
    """The loss from the (N,) per-example losses: their mean, their sum, or them in ``shape``."""
    if reduction == "none":
        return per_example.reshape(shape)
    total = jnp.sum(per_example)
    return total / per_example.shape[0] if reduction == "mean" else total


def _per_example(dout: Array, reduction: str, n: int) -> Array:
    """Each example's share of the loss's cotangent, to scale its (N, C) row by."""
    if reduction == "mean":
        return dout / n
    if reduction == "sum" or dout.ndim == 0:  # "none" on a 1-D x: one example
        return dout
    return dout[:, None]


# --- Mul --------------------------------------------------------------------


@_custom_vjp
def mul(x: ArrayLike, y: ArrayLike) -> Array:
    """The multiplication node: ``x * y`` for two arrays of one shape.

    A Python scalar takes the other's dtype, or the default float: the book's
    ``mul(100, 2)`` is 200.0. Integer arrays are refused.

    Backward: ``dx = dout * y``, ``dy = dout * x`` (the inputs are swapped).
    """
    return _mul_fwd(x, y)[0]


def _mul_fwd(x, y):
    x, y = _operands(x, y)
    out = x * y
    return out, (x, y)


def _mul_bwd(res, dout):
    x, y = res
    return dout * y, dout * x


_vma.defvjp(mul, _mul_fwd, _mul_bwd)


# --- Add --------------------------------------------------------------------


@_custom_vjp
def add(x: ArrayLike, y: ArrayLike) -> Array:
    """The addition node: ``x + y`` for two arrays of one shape.

    Python scalars are taken as in :func:`mul`.

    Backward: ``dx = dout``, ``dy = dout`` (passed through unchanged).
    """
    return _add_fwd(x, y)[0]


def _add_fwd(x, y):
    x, y = _operands(x, y)
    out = x + y
    return out, None


def _add_bwd(_, dout):
    return dout, dout


_vma.defvjp(add, _add_fwd, _add_bwd)


# --- ReLU -------------------------------------------------------------------


@_custom_vjp
def relu(x: ArrayLike) -> Array:
    """``max(0, x)`` elementwise, any shape.

    Backward: ``dx = where(x <= 0, 0, dout)``. The mask is the book's
    ``x <= 0``, so the gradient at exactly 0 is 0.
    """
    return _relu_fwd(x)[0]


def _relu_fwd(x):
    x = _floating("x", x)
    out = jnp.where(x <= 0, jnp.zeros_like(x), x)
    return out, x <= 0


def _relu_bwd(mask, dout):
    return (jnp.where(mask, jnp.zeros_like(dout), dout),)


_vma.defvjp(relu, _relu_fwd, _relu_bwd)


# --- Sigmoid ----------------------------------------------------------------


@_custom_vjp
def sigmoid(x: ArrayLike) -> Array:
    """``1 / (1 + exp(-x))`` elementwise, any shape.

    Backward from the output alone: ``dx = dout * (1 - out) * out``. Finite
    for any finite x: at -1000 the output is 0 and so is the gradient.
    """
    return _sigmoid_fwd(x)[0]


def _sigmoid_fwd(x):
    x = _floating("x", x)
    out = 1 / (1 + jnp.exp(-x))
    return out, out


def _sigmoid_bwd(out, dout):
    return (dout * (1 - out) * out,)


_vma.defvjp(sigmoid, _sigmoid_fwd, _sigmoid_bwd)


# --- Affine -----------------------------------------------------------------


@_custom_vjp
def affine(x: ArrayLike, W: ArrayLike, b: ArrayLike | None) -> Array:
    """``x @ W + b`` with x of shape (N, ...) flattened to (N, D), or x one example.

    Args:
        x: (N, ...) with D features per row once flattened, or (D,) for one
            example, as the book's 5.6.1 computes ``np.dot(X, W) + B``.
        W: (D, M).
        b: (M,), or None for an affine without a bias.

    Returns:
        (N, M), or (M,) for one example.

    Backward: ``dx = dout @ W.T`` in x's original shape, ``dW = x.T @ dout``,
    ``db = sum(dout, 0)``; no db when b is None.
    """
    return _affine_fwd(x, W, b)[0]


def _rows(x: Array) -> Array:
    """x as (N, D): flattened per example, or one example as a batch of one."""
    return x[None] if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _affine_fwd(x, W, b):
    x, W = _floating("x", x), _floating("W", W)
    if x.ndim == 0:
        raise ValueError("x must have shape (N, ...) or (D,) for one example, got shape ()")
    if x.ndim > 1:
        _batch("x", x)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (D, M), got shape {W.shape}")
    x2d = _rows(x)
    if W.shape[0] != x2d.shape[1]:
        raise ValueError(
            f"W must have {x2d.shape[1]} rows to match x of shape {x.shape} "
            f"({x2d.shape[1]} features once flattened), got W of shape {W.shape}"
        )
    arrays = {"x": x, "W": W}
    if b is not None:
        arrays["b"] = b = _floating("b", b)
        if b.shape != (W.shape[1],):
            raise ValueError(
                f"b must have shape ({W.shape[1]},) to match W's columns, got {b.shape}"
            )
    _same_dtype(**arrays)
    out = x2d @ W if b is None else x2d @ W + b[None, :]
    # The book keeps x and W (and b, on self).
    return (out[0] if x.ndim == 1 else out), (x, W, b)


def _affine_bwd(res, dout):
    x, W, b = res
    x2d, dout = _rows(x), (dout[None] if x.ndim == 1 else dout)
    dx = (dout @ W.T).reshape(x.shape)
    dW = _vma.weight_gradient(x2d.T, dout, W)
    db = None if b is None else jnp.sum(dout, axis=0)
    return dx, dW, db


_vma.defvjp(affine, _affine_fwd, _affine_bwd)


# --- Softmax ----------------------------------------------------------------


@_custom_vjp
def softmax(x: ArrayLike) -> Array:
    """Softmax over the last axis, with the max subtracted first.

    Masked logits (-inf) get probability 0. A row with every logit masked, or
    a +inf logit, has no softmax: refused when x is concrete; under ``jit`` or
    ``vmap`` its row is nan. (:func:`softmax_with_loss` gives a fully masked
    row an infinite loss instead.)

    Backward: ``dx = y * (dout - sum(dout * y, -1))`` with y the output.
    """
    return _softmax_fwd(x)[0]


def _softmax_fwd(x):
    x = _floating("x", x)
    if x.ndim < 1:
        raise ValueError(f"x must have at least 1 dim (the classes), got shape {x.shape}")
    _logits(x)
    _some_logit_unmasked(x)
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
    y = e / jnp.sum(e, axis=-1, keepdims=True)
    return y, y


def _softmax_bwd(y, dout):
    return (y * (dout - jnp.sum(dout * y, axis=-1, keepdims=True)),)


_vma.defvjp(softmax, _softmax_fwd, _softmax_bwd)


# --- Cross-entropy error ----------------------------------------------------


@partial(_custom_vjp, nondiff_argnums=(2,))
def cross_entropy_error(y: ArrayLike, t: ArrayLike, reduction: str = "mean") -> Array:
    """The book's loss: ``-sum(log(y[n, t_n] + 1e-7)) / N``.

    Written as ``-sum(t * log(y + 1e-7)) / N``, which is the same for one-hot
    t and, for a soft t (label smoothing), the cross-entropy whose derivative
    is the rule below. The book takes the argmax of a soft t instead.

    Args:
        y: probabilities, (N, C) or (C,) for a batch of one.
        t: one-hot labels of y's shape (rows may be distributions, as label
            smoothing makes them), or integer class indices of shape (N,).
        reduction: ``"mean"`` over the batch (the book's), ``"sum"``, or
            ``"none"`` for each example's loss.

    Returns:
        A scalar; for ``"none"`` one loss per example, (N,), or () for a 1-D y.

    Raises:
        ValueError: for N = 0, an unknown reduction and, when t is concrete
            (not under ``jit``), an index outside 0..C-1 or a row that is
            negative or does not sum to 1.

    Backward: ``dy = -w * onehot(t) / (y + 1e-7)``, each example's ``w`` being
    ``dout / N`` (mean), ``dout`` (sum) or its own ``dout[n]`` (none); no
    gradient flows into t.
    """
    return _cross_entropy_error_fwd(y, t, reduction)[0]


def _cross_entropy_error_fwd(y, t, reduction="mean"):
    reduction = _reduction(reduction)
    y = _floating("y", y)
    _scores("y", y)
    t = _labels(y, t)
    yb, tb = _as_batch(y, t)
    per_example = -jnp.sum(_one_hot_like(yb, tb) * jnp.log(yb + CROSS_ENTROPY_DELTA), axis=-1)
    return _reduce(per_example, reduction, y.shape[:-1]), (y, t)


def _cross_entropy_error_bwd(reduction, res, dout):
    y, t = res
    yb, tb = _as_batch(y, t)
    w = _per_example(dout, reduction, yb.shape[0])
    dy = -w * _one_hot_like(yb, tb) / (yb + CROSS_ENTROPY_DELTA)
    return dy.reshape(y.shape), None


_vma.defvjp(cross_entropy_error, _cross_entropy_error_fwd, _cross_entropy_error_bwd)


# --- Softmax-with-Loss ------------------------------------------------------


@partial(_custom_vjp, nondiff_argnums=(2,))
def softmax_with_loss(x: ArrayLike, t: ArrayLike, reduction: str = "mean") -> Array:
    """Softmax then the cross-entropy, as one layer; by default its mean over the batch.

    The forward is a log-softmax, ``logsumexp(x) - x[n, t_n]`` per example:
    the book's ``log(y + 1e-7)`` would make the exact derivative differ from
    the rule below by up to 99% when y_t is tiny, and logits of +-1e4 stay finite.

    Masked logits (-inf, as in attention or constrained decoding) get
    probability 0 and gradient 0. An example whose label puts mass on a
    masked class has loss inf (log 0), with the finite gradient below. So
    does a row with every logit masked: its label's class is masked too, and
    all its probabilities are taken as 0. A +inf logit has no softmax: it is
    refused when x is concrete; under ``jit`` or ``vmap`` its row's loss and
    gradient are nan.

    Args:
        x: scores, (N, C) or (C,) for a batch of one.
        t: labels, as for :func:`cross_entropy_error` (and checked the same way).
        reduction: ``"mean"`` over the batch (the book's), ``"sum"``, or
            ``"none"`` for each example's loss.

    Returns:
        A scalar; for ``"none"`` one loss per example, (N,), or () for a 1-D x.

    Backward: ``dx = w * (y - onehot(t))`` with ``y = softmax(x)``, each
    example's ``w`` being ``dout / N`` (mean), ``dout`` (sum) or its own
    ``dout[n]`` (none); no gradient flows into t. Unlike the book's
    ``backward(dout=1)``, the incoming ``dout`` is used, so scaled losses and
    weight decay are right.
    """
    return _softmax_with_loss_fwd(x, t, reduction)[0]


def _softmax_with_loss_fwd(x, t, reduction="mean"):
    reduction = _reduction(reduction)
    x = _floating("x", x)
    _scores("x", x)
    _logits(x)
    t = _labels(x, t)
    log_y = _log_softmax(x)
    log_yb, tb = _as_batch(log_y, t)
    onehot = _one_hot_like(log_yb, tb)
    # Classes without label mass add 0 (0 log 0 = 0): a masked logit has
    # log_y = -inf, and -inf * 0 would make the whole loss nan.
    per_example = -jnp.sum(jnp.where(onehot != 0, log_yb * onehot, 0), axis=-1)
    # The book caches y = softmax(x) and t.
    return _reduce(per_example, reduction, x.shape[:-1]), (jnp.exp(log_y), t)


def _softmax_with_loss_bwd(reduction, res, dout):
    y, t = res
    yb, tb = _as_batch(y, t)
    dx = _per_example(dout, reduction, yb.shape[0]) * (yb - _one_hot_like(yb, tb))
    return dx.reshape(y.shape), None


_vma.defvjp(softmax_with_loss, _softmax_with_loss_fwd, _softmax_with_loss_bwd)
