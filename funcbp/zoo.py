"""The book's networks as layer sequences, with the book's names and shapes.

- :data:`two_layer` / :func:`two_layer_net`: TwoLayerNet (ch. 5).
- :func:`network`: MultiLayerNet and MultiLayerNetExtend (ch. 6): any hidden
  sizes, ReLU or sigmoid, batch norm, dropout, weight decay.

Params are named as the book names them (``W1``, ``b1``, ``gamma1``,
``beta1``, ...), so a dict saved by the book's code goes straight in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from funcbp import layers, reference
from funcbp.net import Layer, Network, ParamSpec

__all__ = ["ACTIVATIONS", "MODELS", "network", "two_layer", "two_layer_net"]

ACTIVATIONS = ("relu", "sigmoid")
_ACTIVATION_LAYERS = {
    "relu": ("Relu", layers.relu, reference.relu),
    "sigmoid": ("Sigmoid", layers.sigmoid, reference.sigmoid),
}


class _Builder:
    """Appends layers while tracking one example's shape and the book's numbering.

    Weights are numbered across all weighted layers (W1 the first conv, W2 the
    next affine, ...); layer names are numbered per kind (Conv1, Affine1, ...).
    """

    def __init__(self, name: str, input_shape: tuple[int, ...]):
        self.name = name
        self.input_shape = tuple(input_shape)
        self.shape = self.input_shape
        self.layers: list[Layer] = []
        self.params: list[ParamSpec] = []
        self.state: list[ParamSpec] = []
        self.counts: Counter[str] = Counter()
        self.weighted = 0

    def _name(self, kind: str) -> str:
        self.counts[kind] += 1
        return f"{kind}{self.counts[kind]}"

    def affine(self, size: int) -> None:
        self.weighted += 1
        w, b, fan_in = f"W{self.weighted}", f"b{self.weighted}", math.prod(self.shape)
        self.params += [ParamSpec(w, (fan_in, size), "normal", fan_in), ParamSpec(b, (size,))]
        self.layers.append(Layer(self._name("Affine"), layers.affine, reference.affine, (w, b)))
        self.shape = (size,)

    def activation(self, kind: str) -> None:
        prefix, fn, twin = _ACTIVATION_LAYERS[kind]
        self.layers.append(Layer(self._name(prefix), fn, twin))

    def build(self, weight_init_std: float | str, weight_decay: float = 0.0) -> Network:
        return Network(
            name=self.name,
            layers=tuple(self.layers),
            input_shape=self.input_shape,
            param_specs=tuple(self.params),
            state_specs=tuple(self.state),
            weight_init_std=weight_init_std,
            weight_decay=weight_decay,
        )


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    return values


def two_layer_net(
    input_size: int = 784,
    hidden_size: int = 50,
    output_size: int = 10,
    weight_init_std: float | str = 0.01,
) -> Network:
    """The book's TwoLayerNet: Affine1 -> Relu1 -> Affine2 -> SoftmaxWithLoss.

    Params: W1 (input_size, hidden_size), b1, W2 (hidden_size, output_size), b2.
    """
    input_size, hidden_size, output_size = _positive_ints(
        "input_size, hidden_size and output_size", (input_size, hidden_size, output_size)
    )
    b = _Builder("two-layer", (input_size,))
    b.affine(hidden_size)
    b.activation("relu")
    b.affine(output_size)
    return b.build(weight_init_std)


def network(
    hidden_sizes: int | Sequence[int] = (100, 100, 100, 100),
    activation: str = "relu",
    *,
    weight_decay: float = 0.0,
    weight_init_std: float | str | None = None,
    input_size: int = 784,
    output_size: int = 10,
) -> Network:
    """The book's MultiLayerNet (and MultiLayerNetExtend, with batch norm or dropout).

    Per hidden layer i: Affine{i} -> [BatchNorm{i}] -> Relu{i} or Sigmoid{i}
    -> [Dropout{i}]; then a last Affine and Softmax-with-Loss.

    Args:
        hidden_sizes: the hidden widths, e.g. ``[100, 100]``.
        activation: ``"relu"`` or ``"sigmoid"``.
        weight_decay: lambda of the L2 term ``0.5 * lambda * sum(W**2)``.
        weight_init_std: a number, ``"he"`` or ``"xavier"``; by default He for
            ReLU and Xavier for sigmoid, as the book recommends.
    """
    if isinstance(hidden_sizes, int):
        hidden_sizes = (hidden_sizes,)
    hidden_sizes = _positive_ints("hidden_sizes", hidden_sizes)
    input_size, output_size = _positive_ints(
        "input_size and output_size", (input_size, output_size)
    )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    b = _Builder("multi-layer", (input_size,))
    for size in hidden_sizes:
        b.affine(size)
        b.activation(activation)
    b.affine(output_size)
    if weight_init_std is None:
        weight_init_std = "he" if activation == "relu" else "xavier"
    return b.build(weight_init_std, weight_decay)


two_layer = two_layer_net()
"""The book's TwoLayerNet at its sizes: 784-50-10, weight_init_std 0.01."""

# The models ``funcbp train --model`` knows, by name.
MODELS = ("two-layer", "multi-layer")
