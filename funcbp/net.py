"""Networks as ordered sequences of funcbp layers: the book's OrderedDict, done functionally.

A :class:`Network` runs its layers in order for the forward pass. Its
gradient comes four ways that must agree: ``"manual"`` (``jax.grad`` through
the hand-written rules), ``"backprop"`` (an explicit reverse sweep that calls
each layer's hand-written backward rule, with no JAX autodiff, as the book's
``TwoLayerNet.gradient`` does), ``"autodiff"`` (``jax.grad`` through the
plain-jnp twins) and ``"numerical"`` (central differences).

Params are an explicit dict ``{"W1", "b1", "W2", "b2", ...}``, passed in and
returned, never shared state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from funcbp import layers, reference
from funcbp.gradcheck import numerical_gradient

__all__ = ["ACTIVATIONS", "GRADIENT_METHODS", "Layer", "Network", "network", "two_layer"]

Params = dict[str, Array]

GRADIENT_METHODS = ("manual", "backprop", "autodiff", "numerical")
ACTIVATIONS = ("relu", "sigmoid")


@dataclass(frozen=True)
class Layer:
    """One entry of the sequence: a funcbp layer, its twin and its params' names."""

    name: str
    fn: Callable[..., Array]
    params: tuple[str, ...] = ()

    @property
    def reference(self) -> Callable[..., Array]:
        return getattr(reference, self.fn.__name__)

    def rules(self) -> tuple[Callable, Callable]:
        """The hand-written ``(fwd, bwd)`` registered with ``defvjp``."""
        return self.fn.fwd, self.fn.bwd


@dataclass(frozen=True)
class Network:
    """Affine -> activation -> ... -> Affine, then Softmax-with-Loss.

    Attributes:
        hidden_sizes: the widths of the hidden layers, e.g. ``(50,)``.
        activation: ``"relu"`` or ``"sigmoid"``.
    """

    hidden_sizes: tuple[int, ...] = (50,)
    activation: str = "relu"

    def __post_init__(self):
        sizes = tuple(self.hidden_sizes)
        if not sizes or any(not isinstance(h, int) or h <= 0 for h in sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        object.__setattr__(self, "hidden_sizes", sizes)

    @property
    def layers(self) -> tuple[Layer, ...]:
        act = {"relu": ("Relu", layers.relu), "sigmoid": ("Sigmoid", layers.sigmoid)}
        name, fn = act[self.activation]
        seq = []
        for i in range(1, len(self.hidden_sizes) + 2):
            seq.append(Layer(f"Affine{i}", layers.affine, (f"W{i}", f"b{i}")))
            if i <= len(self.hidden_sizes):
                seq.append(Layer(f"{name}{i}", fn))
        return tuple(seq)

    @property
    def last_layer(self) -> Layer:
        return Layer("SoftmaxWithLoss", layers.softmax_with_loss)

    def init(
        self,
        key: Array,
        input_size: int = 784,
        hidden_size: int | Sequence[int] | None = None,
        output_size: int = 10,
        weight_init_std: float | str = 0.01,
        dtype=jnp.float32,
    ) -> Params:
        """Gaussian weights and zero biases, as the book initializes them.

        Args:
            key: a ``jax.random`` key.
            input_size, output_size: D and C.
            hidden_size: an int or one int per hidden layer; defaults to
                ``hidden_sizes``.
            weight_init_std: the std of every W, or ``"he"`` (sqrt(2/n)) or
                ``"xavier"`` (sqrt(1/n)) with n the layer's fan-in.

        Returns:
            ``{"W1": (D, H1), "b1": (H1,), ..., "Wk": (Hk-1, C), "bk": (C,)}``.
        """
        if hidden_size is None:
            hidden = self.hidden_sizes
        elif isinstance(hidden_size, int):
            hidden = (hidden_size,)
        else:
            hidden = tuple(hidden_size)
        if len(hidden) != len(self.hidden_sizes) or any(h <= 0 for h in hidden):
            raise ValueError(
                f"hidden_size must be {len(self.hidden_sizes)} positive width(s), "
                f"got {hidden_size!r}"
            )
        for name, size in (("input_size", input_size), ("output_size", output_size)):
            if size <= 0:
                raise ValueError(f"{name} must be positive, got {size}")
        sizes = (input_size, *hidden, output_size)
        stds = tuple(_init_std(weight_init_std, n_in) for n_in in sizes[:-1])
        return _init_params(key, sizes, stds, jnp.dtype(dtype))

    def _forward(self, params: Params, x: ArrayLike, twins: bool) -> Array:
        h = x
        for layer in self.layers:
            fn = layer.reference if twins else layer.fn
            with jax.named_scope(layer.name):
                h = fn(h, *(params[p] for p in layer.params))
        return h

    def predict(self, params: Params, x: ArrayLike) -> Array:
        """Scores (N, C): the last Affine's output; softmax is only for the loss."""
        return self._forward(params, x, twins=False)

    def loss(self, params: Params, x: ArrayLike, t: ArrayLike) -> Array:
        """Mean Softmax-with-Loss over the batch; t one-hot (N, C) or indices (N,)."""
        scores = self._forward(params, x, twins=False)
        with jax.named_scope(self.last_layer.name):
            return self.last_layer.fn(scores, t)

    def reference_loss(self, params: Params, x: ArrayLike, t: ArrayLike) -> Array:
        """:meth:`loss` through the plain-jnp twins, for ``jax.grad`` to differentiate."""
        return self.last_layer.reference(self._forward(params, x, twins=True), t)

    def accuracy(self, params: Params, x: ArrayLike, t: ArrayLike) -> Array:
        """The fraction of rows whose highest score is the label."""
        t = jnp.asarray(t)
        if t.ndim == 2:
            t = jnp.argmax(t, axis=1)
        return jnp.mean(jnp.argmax(self.predict(params, x), axis=1) == t)

    def backprop(self, params: Params, x: ArrayLike, t: ArrayLike) -> Params:
        """The book's ``gradient()``: forward, then each hand-written backward in reverse.

        No JAX autodiff is involved: every ``fwd`` keeps its residuals, and
        every ``bwd`` is called with them and the upstream ``dout``.
        """
        h, saved = jnp.asarray(x), []
        for layer in self.layers:
            fwd, _ = layer.rules()
            h, res = fwd(h, *(params[p] for p in layer.params))
            saved.append(res)
        fwd, bwd = self.last_layer.rules()
        loss, res = fwd(h, t)
        dout, _ = bwd(res, jnp.ones_like(loss))

        grads = {}
        for layer, res in zip(reversed(self.layers), reversed(saved), strict=True):
            dout, *dparams = layer.rules()[1](res, dout)
            grads.update(zip(layer.params, dparams, strict=True))
        return {name: grads[name] for name in params}

    def gradient(
        self, params: Params, x: ArrayLike, t: ArrayLike, method: str = "manual"
    ) -> Params:
        """The loss's gradient by one of :data:`GRADIENT_METHODS`; they agree."""
        if method == "manual":
            return jax.grad(self.loss)(params, x, t)
        if method == "backprop":
            return self.backprop(params, x, t)
        if method == "autodiff":
            return jax.grad(self.reference_loss)(params, x, t)
        if method == "numerical":
            return numerical_gradient(lambda p: self.loss(p, x, t), params)
        raise ValueError(f"method must be one of {', '.join(GRADIENT_METHODS)}, got {method!r}")


def _init_std(weight_init_std: float | str, fan_in: int) -> float:
    if weight_init_std in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if weight_init_std in ("xavier", "sigmoid"):
        return math.sqrt(1.0 / fan_in)
    if isinstance(weight_init_std, int | float) and weight_init_std > 0:
        return float(weight_init_std)
    raise ValueError(
        f"weight_init_std must be a positive number, 'he' or 'xavier', got {weight_init_std!r}"
    )


# One compiled program for all the layers: jax.random compiles per shape otherwise.
@partial(jax.jit, static_argnums=(1, 2, 3))
def _init_params(key: Array, sizes: tuple[int, ...], stds: tuple[float, ...], dtype) -> Params:
    params = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out, std) in enumerate(zip(keys, sizes, sizes[1:], stds, strict=False), 1):
        params[f"W{i}"] = std * jax.random.normal(k, (n_in, n_out), dtype)
        params[f"b{i}"] = jnp.zeros(n_out, dtype)
    return params


def network(hidden_sizes: int | Sequence[int] = (50,), activation: str = "relu") -> Network:
    """The book's MultiLayerNet: ``network([100, 100], "sigmoid")``."""
    if isinstance(hidden_sizes, int):
        hidden_sizes = (hidden_sizes,)
    return Network(tuple(hidden_sizes), activation)


two_layer = Network((50,), "relu")
"""The book's TwoLayerNet: Affine1 -> Relu1 -> Affine2 -> SoftmaxWithLoss."""
