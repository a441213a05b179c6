"""The table of what funcbp checks, read by the tests, the CLI and experiments.

Each row names a function built from hand-written rules, its plain-jnp twin and
a factory for example arguments. A new layer is one new row, and is then
checked by ``funcbp gradcheck`` and by the test suite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from funcbp import conv, layers, norm, reference
from funcbp.gradcheck import GradientCheck, compare_gradients
from funcbp.zoo import network, two_layer_net

__all__ = ["CHECKS", "LAYER_CHECKS", "NETWORK_CHECKS", "Check", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One row: ``manual(*make_args(rng, dtype))`` is checked against ``reference``.

    ``argnums`` names the arguments to differentiate; None means every
    floating one. Batch norm's running statistics are floating but carry no
    gradient by design, so its rows leave them out.
    """

    name: str
    manual: Callable[..., Any]
    reference: Callable[..., Any]
    make_args: Callable[[np.random.Generator, DTypeLike], tuple[Any, ...]]
    argnums: tuple[int, ...] | None = None

    def run(self, dtype: DTypeLike = jnp.float64, seed: int = 0) -> GradientCheck:
        args = self.make_args(np.random.default_rng(seed), dtype)
        return compare_gradients(
            self.manual, self.reference, args, argnums=self.argnums, name=self.name, seed=seed
        )


# Example arguments come from NumPy: jax.random would compile a program per shape.


def _normal(rng, shape, dtype, scale=1.0):
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _labels(rng, n, classes):
    return jnp.asarray(rng.integers(0, classes, n), jnp.int32)


def _away_from_zero(rng, shape, dtype):
    # Finite differences across ReLU's kink are meaningless; keep |x| >= 0.1.
    return jnp.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape), dtype)


def _pair(rng, dtype):
    return _normal(rng, (3, 4), dtype), _normal(rng, (3, 4), dtype)


def _affine_args(rng, dtype):
    # A 3-D x, flattened to (4, 6) inside affine.
    return _normal(rng, (4, 2, 3), dtype), _normal(rng, (6, 5), dtype), _normal(rng, (5,), dtype)


def _single_example(rng, dtype):
    # The book's 5.6.1: one x of shape (D,), out of shape (M,).
    return _normal(rng, (6,), dtype), _normal(rng, (6, 5), dtype), _normal(rng, (5,), dtype)


def _no_bias(rng, dtype):
    return _normal(rng, (4, 2, 3), dtype), _normal(rng, (6, 5), dtype)


def _loss_rows(name, layer, twin, make_args):
    """The loss with each reduction besides the default mean: the rule for each is its own."""
    return tuple(
        Check(
            f"{name}_{reduction}",
            partial(layer, reduction=reduction),
            partial(twin, reduction=reduction),
            make_args,
        )
        for reduction in ("sum", "none")
    )


def _probabilities_and_labels(rng, dtype):
    # Mild logits keep every probability well above the float32 step.
    logits = 0.5 * rng.standard_normal((4, 5))
    y = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return jnp.asarray(y, dtype), _labels(rng, 4, 5)


def _scores_and_labels(rng, dtype):
    return _normal(rng, (4, 5), dtype), _labels(rng, 4, 5)


def _one_example_scores(rng, dtype):
    # A 1-D x is a batch of one; unreduced, its loss has shape ().
    return _normal(rng, (5,), dtype), jnp.asarray(rng.integers(0, 5), jnp.int32)


# Where the masked row puts -inf: one class, two, the first, none.
_MASK = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)


def _masked(loss):
    """``loss`` on scores with -inf added at ``_MASK``, the way attention masks are applied.

    The checked x stays finite, so finite differences mean something; a
    masked entry's gradient passes through the addition unchanged, so the
    layer's own 0 there is checked too.
    """

    def masked_softmax_with_loss(x, t):
        return loss(x + jnp.where(_MASK, -jnp.inf, 0).astype(x.dtype), t)

    return masked_softmax_with_loss


def _masked_scores_and_labels(rng, dtype):
    # Labels on unmasked classes only: a masked label's loss is inf.
    labels = [rng.choice(np.flatnonzero(~row)) for row in _MASK]
    return _normal(rng, _MASK.shape, dtype), jnp.asarray(labels, jnp.int32)


# --- chapters 6 and 7 ---


def _distinct(rng, shape, dtype):
    """Values 0.05 apart, none within 0.025 of 0, shuffled.

    Max pooling's gradient jumps where two values of a window tie, and a ReLU's
    at 0; finite differences (float32 steps 1e-2) must not cross either.
    """
    n = int(np.prod(shape))
    values = 0.05 * (np.arange(n) - n // 2) + 0.025
    return jnp.asarray(rng.permutation(values).reshape(shape), dtype)


def _conv_args(x_shape, w_shape, bias=True):
    def make(rng, dtype):
        x, W = _normal(rng, x_shape, dtype), _normal(rng, w_shape, dtype)
        return x, W, _normal(rng, (w_shape[0],), dtype) if bias else None

    return make


def _relu_then_pool(x):
    """pooling(relu(x)): all-negative windows become all-zero ones, ties everywhere."""
    return conv.pooling(layers.relu(x))


def _relu_then_pool_twin(x):
    return reference.pooling(reference.relu(x))


def _negative_windows(rng, dtype):
    # Half of the 2x2 windows all negative: after the ReLU, ties of zeros.
    x = np.abs(np.asarray(_distinct(rng, (2, 2, 4, 6), np.float64)))
    signs = np.where(rng.random((2, 2, 2, 3)) < 0.5, -1.0, 1.0)
    return (jnp.asarray(x * signs.repeat(2, axis=2).repeat(2, axis=3), dtype),)


def _first_output(fn, **static):
    """``fn(*args, **static)[0]``: batch norm's ``out``, without the new running statistics."""

    @functools.wraps(fn)
    def out(*args):
        return fn(*args, **static)[0]

    return out


def _momentum_last(fn):
    """Batch norm's ``out`` with the momentum as a sixth positional argument."""

    @functools.wraps(fn)
    def out(x, gamma, beta, running_mean, running_var, momentum):
        return fn(x, gamma, beta, running_mean, running_var, momentum=momentum)[0]

    return out


def _batch_norm_args(x_shape, d):
    def make(rng, dtype):
        x = _normal(rng, x_shape, dtype, 2.0)
        gamma, beta = _normal(rng, (d,), dtype), _normal(rng, (d,), dtype)
        mean = _normal(rng, (d,), dtype)
        var = jnp.asarray(rng.uniform(0.5, 2.0, d), dtype)
        return x, gamma, beta, mean, var

    return make


def _batch_norm_row(name, x_shape, d, **static):
    return Check(
        name,
        _first_output(norm.batch_norm, **static),
        _first_output(reference.batch_norm, **static),
        _batch_norm_args(x_shape, d),
        argnums=(0, 1, 2),  # x, gamma, beta; the running statistics carry no gradient
    )


def _dropout_row(name, make_key, **static):
    def make(rng, dtype):
        return _normal(rng, (4, 6), dtype), make_key(0)

    return Check(name, partial(norm.dropout, **static), partial(reference.dropout, **static), make)


def _traced_rate_row(name, **static):
    """Dropout with its rate as an argument, so a traced value under the check's jit."""

    def make(rng, dtype):
        return _normal(rng, (4, 6), dtype), jax.random.key(0), jnp.asarray(0.3, dtype)

    manual, twin = partial(norm.dropout, **static), partial(reference.dropout, **static)
    return Check(name, manual, twin, make, argnums=(0,))  # no gradient flows into the rate


def _with_value(make_args, value):
    """``make_args``' arguments and one more, a hyperparameter in the row's dtype."""

    def make(rng, dtype):
        return (*make_args(rng, dtype), jnp.asarray(value, dtype))

    return make


def _weights(rng, dtype):
    return ({"W1": _normal(rng, (3, 4), dtype), "W2": _normal(rng, (4, 2), dtype)},)


LATER_LAYER_CHECKS: tuple[Check, ...] = (
    # Stride 2 with padding, non-square filters, both layouts, and windows
    # that lie partly (pad 2 with a 2-row filter) or wholly in the padding.
    Check(
        "convolution",
        partial(conv.convolution, stride=2, pad=1),
        partial(reference.convolution, stride=2, pad=1),
        _conv_args((2, 2, 5, 6), (3, 2, 3, 2)),
    ),
    Check(
        "convolution_nhwc",
        partial(conv.convolution, pad=2, layout="NHWC"),
        partial(reference.convolution, pad=2, layout="NHWC"),
        _conv_args((2, 3, 4, 2), (3, 2, 2, 3)),
    ),
    # The floor: 3x3 windows two apart reach rows 0..6 of 8, and no window the last row.
    Check(
        "convolution_floor",
        partial(conv.convolution, stride=2),
        partial(reference.convolution, stride=2),
        _conv_args((2, 2, 8, 9), (3, 2, 3, 3)),
    ),
    # Without a bias, 3x3/2/1 on 8x8, whose last padding row no window reaches.
    Check(
        "convolution_nhwc_no_bias",
        partial(conv.convolution, stride=2, pad=1, layout="NHWC"),
        partial(reference.convolution, stride=2, pad=1, layout="NHWC"),
        _conv_args((2, 8, 8, 2), (3, 2, 3, 3), bias=False),
    ),
    Check(
        "pooling", conv.pooling, reference.pooling, lambda k, d: (_distinct(k, (2, 3, 4, 6), d),)
    ),
    # Overlapping windows, whose gradients add, over a zero padding.
    Check(
        "pooling_nhwc_overlap",
        partial(conv.pooling, pool_h=3, pool_w=2, stride=1, pad=1, layout="NHWC"),
        partial(reference.pooling, pool_h=3, pool_w=2, stride=1, pad=1, layout="NHWC"),
        lambda k, d: (_distinct(k, (2, 4, 5, 2), d),),
    ),
    Check("pooling_relu_ties", _relu_then_pool, _relu_then_pool_twin, _negative_windows),
    # The floor: ResNet's stem pool, 3x3/2/1, on 8x8; and 2x2/2 on 7x9, whose last
    # row and column no window reaches (the interleaving col2im).
    Check(
        "pooling_floor",
        partial(conv.pooling, pool_h=3, pool_w=3, stride=2, pad=1),
        partial(reference.pooling, pool_h=3, pool_w=3, stride=2, pad=1),
        lambda k, d: (_distinct(k, (2, 2, 8, 8), d),),
    ),
    Check(
        "pooling_nhwc_floor",
        partial(conv.pooling, layout="NHWC"),
        partial(reference.pooling, layout="NHWC"),
        lambda k, d: (_distinct(k, (2, 7, 9, 2), d),),
    ),
    Check(
        "transpose",
        partial(conv.transpose, axes=(0, 2, 3, 1)),
        partial(reference.transpose, axes=(0, 2, 3, 1)),
        lambda k, d: (_normal(k, (2, 3, 4, 5), d),),
    ),
    _batch_norm_row("batch_norm", (5, 4), 4),
    _batch_norm_row("batch_norm_4d_eval", (4, 2, 3, 3), 18, train=False),
    _batch_norm_row("batch_norm_channel", (4, 3, 2, 2), 3, axis=1),
    # The momentum as an argument, traced under the check's jit.
    Check(
        "batch_norm_traced_momentum",
        _momentum_last(norm.batch_norm),
        _momentum_last(reference.batch_norm),
        _with_value(_batch_norm_args((5, 4), 4), 0.8),
        argnums=(0, 1, 2),
    ),
    _dropout_row("dropout", jax.random.key),
    _dropout_row("dropout_eval", jax.random.key, train=False),
    _dropout_row("dropout_inverted", jax.random.PRNGKey, inverted=True),
    _traced_rate_row("dropout_traced_rate"),
    _traced_rate_row("dropout_inverted_traced_rate", inverted=True),
    _traced_rate_row("dropout_eval_traced_rate", train=False),
    Check(
        "weight_decay",
        partial(norm.weight_decay, lam=0.1),
        partial(reference.weight_decay, lam=0.1),
        _weights,
    ),
    Check(
        "weight_decay_traced_lam",
        norm.weight_decay,
        reference.weight_decay,
        _with_value(_weights, 0.1),
        argnums=(0,),  # no gradient flows into lambda
    ),
)

LAYER_CHECKS: tuple[Check, ...] = (
    Check("mul", layers.mul, reference.mul, _pair),
    Check("add", layers.add, reference.add, _pair),
    Check("relu", layers.relu, reference.relu, lambda k, d: (_away_from_zero(k, (3, 4), d),)),
    Check("sigmoid", layers.sigmoid, reference.sigmoid, lambda k, d: (_normal(k, (3, 4), d, 2),)),
    Check("affine", layers.affine, reference.affine, _affine_args),
    Check("affine_single_example", layers.affine, reference.affine, _single_example),
    Check(
        "affine_no_bias",
        partial(layers.affine, b=None),
        partial(reference.affine, b=None),
        _no_bias,
    ),
    Check("softmax", layers.softmax, reference.softmax, lambda k, d: (_normal(k, (4, 5), d),)),
    Check(
        "cross_entropy_error",
        layers.cross_entropy_error,
        reference.cross_entropy_error,
        _probabilities_and_labels,
    ),
    *_loss_rows(
        "cross_entropy_error",
        layers.cross_entropy_error,
        reference.cross_entropy_error,
        _probabilities_and_labels,
    ),
    Check(
        "softmax_with_loss",
        layers.softmax_with_loss,
        reference.softmax_with_loss,
        _scores_and_labels,
    ),
    *_loss_rows(
        "softmax_with_loss",
        layers.softmax_with_loss,
        reference.softmax_with_loss,
        _scores_and_labels,
    ),
    Check(
        "softmax_with_loss_none_one_example",
        partial(layers.softmax_with_loss, reduction="none"),
        partial(reference.softmax_with_loss, reduction="none"),
        _one_example_scores,
    ),
    Check(
        "masked_softmax_with_loss",
        _masked(layers.softmax_with_loss),
        _masked(reference.softmax_with_loss),
        _masked_scores_and_labels,
    ),
    *LATER_LAYER_CHECKS,
)


# Small sizes keep the finite differences quick.
_SMALL_TWO_LAYER = two_layer_net(12, 8, 5)


def _two_layer_args(rng, dtype):
    # Weights of std 0.5 keep most ReLU inputs well off the kink.
    params = {s.name: _normal(rng, s.shape, dtype, 0.5) for s in _SMALL_TWO_LAYER.param_specs}
    return params, _normal(rng, (3, 12), dtype), _labels(rng, 3, 5)


# MultiLayerNetExtend with everything on: batch norm, dropout and weight decay, in train mode.
_SMALL_EXTEND = network(
    [8, 6], batch_norm=True, dropout=0.3, weight_decay=0.1, input_size=10, output_size=5
)
_EXTEND_KEY = 3  # the dropout masks' seed


def _train_loss(loss):
    """``loss`` in train mode from fresh running statistics, with fixed dropout masks."""

    def train_loss(params, x, t):
        state = _SMALL_EXTEND.init_state(x.dtype)
        return loss(params, x, t, state, train=True, key=jax.random.key(_EXTEND_KEY))[0]

    return train_loss


def _extend_args(rng, dtype):
    # A batch of 8: batch norm over fewer examples curves too much for finite differences.
    params = {s.name: _normal(rng, s.shape, dtype, 0.5) for s in _SMALL_EXTEND.param_specs}
    params = {k: v + 1 if k.startswith("gamma") else v for k, v in params.items()}
    return params, _normal(rng, (8, 10), dtype), _labels(rng, 8, 5)


NETWORK_CHECKS: tuple[Check, ...] = (
    Check("two_layer", _SMALL_TWO_LAYER.loss, _SMALL_TWO_LAYER.reference_loss, _two_layer_args),
    Check(
        "multi_layer_extend",
        _train_loss(_SMALL_EXTEND.loss),
        _train_loss(_SMALL_EXTEND.reference_loss),
        _extend_args,
    ),
)

CHECKS: tuple[Check, ...] = LAYER_CHECKS + NETWORK_CHECKS


def run_checks(
    dtype: DTypeLike = jnp.float64, names: Sequence[str] | None = None, seed: int = 0
) -> list[GradientCheck]:
    """Runs the rows of :data:`CHECKS` (all, or those named) in one dtype.

    float64 needs ``jax.config.update("jax_enable_x64", True)`` first.
    """
    known = [c.name for c in CHECKS]
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"names must be among {', '.join(known)}; got {', '.join(unknown)}")
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64; set it before creating arrays")
    return [c.run(dtype, seed) for c in CHECKS if not names or c.name in names]
