"""The layers of chapter 5 as pure functions with hand-written backward rules.

Each layer reads top to bottom: the primal function, its ``_fwd`` returning
``(out, residuals)``, its ``_bwd(residuals, dout)``, then ``defvjp``. The
residuals are exactly what the book's layer classes cache on ``self``.

Every rule multiplies by the incoming cotangent ``dout``, so ``grad(3 * f)`` is
three times ``grad(f)``. The rules compose with ``jit``, ``vmap``, ``lax.scan``,
``jax.checkpoint`` and reverse-over-reverse (``grad`` of ``grad``,
``jax.jacrev``, ``jax.hessian``).

Forward mode does not pass through ``jax.custom_vjp``: ``jax.jvp`` and
``jax.jacfwd`` of these layers raise ``TypeError``. Use reverse mode, or the
twins in :mod:`funcbp.reference`.

Bad input raises ``TypeError`` or ``ValueError`` naming the argument. Shapes
and dtypes are checked always, the values of the labels ``t`` only when t is
concrete: under ``jit`` or ``vmap`` they are used as given.
"""

from __future__ import annotations

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


# Static arguments (strides, flags, rates) pass through custom_vjp's
# nondiff_argnums, so they must be plain Python values: an array there is
# traced under jit and breaks the rule, a bool passed as a stride is a typo.


def _static_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _static_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a Python bool, got {value!r} ({type(value).__name__})")
    return value


def _static_float(name: str, value: object, low: float, high: float, *, high_open: bool) -> float:
    """A Python float (or int) in [low, high], or [low, high) with ``high_open``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a Python float, got {value!r} ({type(value).__name__})")
    if not (low <= value < high if high_open else low <= value <= high):
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


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


def _at(index: tuple[int, ...]) -> str:
    return f" at t[{', '.join(str(int(i)) for i in index)}]" if index else ""


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


# --- Mul --------------------------------------------------------------------


@jax.custom_vjp
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


mul.defvjp(_mul_fwd, _mul_bwd)


# --- Add --------------------------------------------------------------------


@jax.custom_vjp
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


add.defvjp(_add_fwd, _add_bwd)


# --- ReLU -------------------------------------------------------------------


@jax.custom_vjp
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


relu.defvjp(_relu_fwd, _relu_bwd)


# --- Sigmoid ----------------------------------------------------------------


@jax.custom_vjp
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


sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


# --- Affine -----------------------------------------------------------------


@jax.custom_vjp
def affine(x: ArrayLike, W: ArrayLike, b: ArrayLike) -> Array:
    """``x @ W + b`` with x of shape (N, ...) flattened to (N, D).

    Args:
        x: (N, ...) with D features per row once flattened.
        W: (D, M).
        b: (M,).

    Returns:
        (N, M).

    Backward: ``dx = dout @ W.T`` in x's original shape, ``dW = x.T @ dout``,
    ``db = sum(dout, 0)``.
    """
    return _affine_fwd(x, W, b)[0]


def _affine_fwd(x, W, b):
    x, W, b = _floating("x", x), _floating("W", W), _floating("b", b)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...) with at least 2 dims, got shape {x.shape}")
    _batch("x", x)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (D, M), got shape {W.shape}")
    x2d = x.reshape(x.shape[0], -1)
    if W.shape[0] != x2d.shape[1]:
        raise ValueError(
            f"W must have {x2d.shape[1]} rows to match x of shape {x.shape} "
            f"({x2d.shape[1]} features once flattened), got W of shape {W.shape}"
        )
    if b.shape != (W.shape[1],):
        raise ValueError(f"b must have shape ({W.shape[1]},) to match W's columns, got {b.shape}")
    _same_dtype(x=x, W=W, b=b)
    out = x2d @ W + b[None, :]
    return out, (x, W)


def _affine_bwd(res, dout):
    x, W = res
    x2d = x.reshape(x.shape[0], -1)
    dx = (dout @ W.T).reshape(x.shape)
    # With a batch-sharded x on an Explicit mesh, x.T @ dout contracts the
    # sharded axis; the result is laid out like W (replicated, for data parallelism).
    dW = jnp.matmul(x2d.T, dout, out_sharding=jax.typeof(W).sharding)
    db = jnp.sum(dout, axis=0)
    return dx, dW, db


_vma.defvjp(affine, _affine_fwd, _affine_bwd)


# --- Softmax ----------------------------------------------------------------


@jax.custom_vjp
def softmax(x: ArrayLike) -> Array:
    """Softmax over the last axis, with the max subtracted first.

    Backward: ``dx = y * (dout - sum(dout * y, -1))`` with y the output.
    """
    return _softmax_fwd(x)[0]


def _softmax_fwd(x):
    x = _floating("x", x)
    if x.ndim < 1:
        raise ValueError(f"x must have at least 1 dim (the classes), got shape {x.shape}")
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
    y = e / jnp.sum(e, axis=-1, keepdims=True)
    return y, y


def _softmax_bwd(y, dout):
    return (y * (dout - jnp.sum(dout * y, axis=-1, keepdims=True)),)


softmax.defvjp(_softmax_fwd, _softmax_bwd)


# --- Cross-entropy error ----------------------------------------------------


@jax.custom_vjp
def cross_entropy_error(y: ArrayLike, t: ArrayLike) -> Array:
    """The book's loss: ``-sum(log(y[n, t_n] + 1e-7)) / N``.

    Written as ``-sum(t * log(y + 1e-7)) / N``, which is the same for one-hot
    t and, for a soft t (label smoothing), the cross-entropy whose derivative
    is the rule below. The book takes the argmax of a soft t instead.

    Args:
        y: probabilities, (N, C) or (C,) for a batch of one.
        t: one-hot labels of y's shape (rows may be distributions, as label
            smoothing makes them), or integer class indices of shape (N,).

    Returns:
        A scalar.

    Raises:
        ValueError: for N = 0 and, when t is concrete (not under ``jit``), for
            an index outside 0..C-1 or a row that is negative or does not sum to 1.

    Backward: ``dy = -dout * onehot(t) / (N * (y + 1e-7))``; no gradient
    flows into t.
    """
    return _cross_entropy_error_fwd(y, t)[0]


def _cross_entropy_error_fwd(y, t):
    y = _floating("y", y)
    _scores("y", y)
    t = _labels(y, t)
    yb, tb = _as_batch(y, t)
    loss = -jnp.sum(_one_hot_like(yb, tb) * jnp.log(yb + CROSS_ENTROPY_DELTA)) / yb.shape[0]
    return loss, (y, t)


def _cross_entropy_error_bwd(res, dout):
    y, t = res
    yb, tb = _as_batch(y, t)
    dy = -dout * _one_hot_like(yb, tb) / (yb.shape[0] * (yb + CROSS_ENTROPY_DELTA))
    return dy.reshape(y.shape), None


cross_entropy_error.defvjp(_cross_entropy_error_fwd, _cross_entropy_error_bwd)


# --- Softmax-with-Loss ------------------------------------------------------


@jax.custom_vjp
def softmax_with_loss(x: ArrayLike, t: ArrayLike) -> Array:
    """Softmax then the mean cross-entropy over the batch, as one layer.

    The forward is a log-softmax, ``mean(logsumexp(x) - x[n, t_n])``: the
    book's ``log(y + 1e-7)`` would make the exact derivative differ from the
    rule below by up to 99% when y_t is tiny, and logits of +-1e4 stay finite.

    Masked logits (-inf, as in attention or constrained decoding) get
    probability 0 and gradient 0. If a label puts its mass on a masked class
    the loss is inf (log 0), with the finite gradient below; a row with every
    logit masked has no softmax, and its loss is nan.

    Args:
        x: scores, (N, C) or (C,) for a batch of one.
        t: labels, as for :func:`cross_entropy_error` (and checked the same way).

    Returns:
        A scalar.

    Backward: ``dx = dout * (y - onehot(t)) / N`` with ``y = softmax(x)``; no
    gradient flows into t. Unlike the book's ``backward(dout=1)``, the
    incoming ``dout`` is used, so scaled losses and weight decay are right.
    """
    return _softmax_with_loss_fwd(x, t)[0]


def _softmax_with_loss_fwd(x, t):
    x = _floating("x", x)
    _scores("x", x)
    t = _labels(x, t)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    log_y = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))
    log_yb, tb = _as_batch(log_y, t)
    onehot = _one_hot_like(log_yb, tb)
    # Classes without label mass add 0 (0 log 0 = 0): a masked logit has
    # log_y = -inf, and -inf * 0 would make the whole loss nan.
    loss = -jnp.sum(jnp.where(onehot != 0, log_yb * onehot, 0)) / log_yb.shape[0]
    # The book caches y = softmax(x) and t.
    return loss, (jnp.exp(log_y), t)


def _softmax_with_loss_bwd(res, dout):
    y, t = res
    yb, tb = _as_batch(y, t)
    dx = dout * (yb - _one_hot_like(yb, tb)) / yb.shape[0]
    return dx.reshape(y.shape), None


softmax_with_loss.defvjp(_softmax_with_loss_fwd, _softmax_with_loss_bwd)
