"""The book's networks as layer sequences, with the book's names and shapes.

- :data:`two_layer` / :func:`two_layer_net`: TwoLayerNet (ch. 5).
- :func:`network`: MultiLayerNet and MultiLayerNetExtend (ch. 6): any hidden
  sizes, ReLU or sigmoid, batch norm, dropout, weight decay.
- :data:`simple_convnet` / :func:`simple_convnet_net`: SimpleConvNet (ch. 7).
- :data:`deep_convnet` / :func:`deep_convnet_net`: DeepConvNet (ch. 8).
- :data:`MODELS`: the registry that ``funcbp train``, ``evaluate`` and
  ``bench`` read: each model's builder, the book's recipe for it, the options
  that apply and how to size it from a params file.

Params are named as the book names them (``W1``, ``b1``, ``gamma1``,
``beta1``, ...), with the book's shapes (filters (FN, C, FH, FW)), so a dict
saved by the book's code goes straight in.

The conv nets take the book's NCHW images. Inside, by default, they keep
their activations channels-last (``layout="NHWC"``): the same hand-written
rules, one transpose of the input (free for one channel) and one before the
first Affine, so the flatten follows the book's (C, H, W) order and the
book's weights. ``layout="NCHW"`` runs the book's layout throughout; both
give the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcbp import _checks, conv, layers, norm, reference
from funcbp.net import Layer, Network, ParamSpec

__all__ = [
    "ACTIVATIONS",
    "LAYOUTS",
    "MODELS",
    "ModelSpec",
    "Recipe",
    "build",
    "deep_convnet",
    "deep_convnet_net",
    "network",
    "network_for",
    "simple_convnet",
    "simple_convnet_net",
    "two_layer",
    "two_layer_net",
]
LAYOUTS = ("NHWC", "NCHW")

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

    def __init__(self, name: str, input_shape: tuple[int, ...], layout: str = "NCHW"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.name = name
        self.input_shape = tuple(input_shape)
        self.shape = self.input_shape  # one example, in the book's (C, H, W) order
        self.layout = layout  # the activations' layout inside the conv layers
        self.channels_last = False  # where the activation is now
        self.layers: list[Layer] = []
        self.params: list[ParamSpec] = []
        self.state: list[ParamSpec] = []
        self.counts: Counter[str] = Counter()
        self.weighted = 0

    def _name(self, kind: str) -> str:
        self.counts[kind] += 1
        return f"{kind}{self.counts[kind]}"

    def _relayout(self, channels_last: bool) -> None:
        """A transpose layer, where the activations must change layout."""
        if self.channels_last == channels_last:
            return
        name, axes = ("ToNHWC", (0, 2, 3, 1)) if channels_last else ("ToNCHW", (0, 3, 1, 2))
        options = (("axes", axes),)
        self.layers.append(Layer(name, conv.transpose, reference.transpose, options=options))
        self.channels_last = channels_last

    def conv(self, filters: int, size: int, stride: int = 1, pad: int = 0) -> None:
        self._relayout(self.layout == "NHWC")
        self.weighted += 1
        c, h, w = self.shape
        fan_in = c * size * size
        w_name, b_name = f"W{self.weighted}", f"b{self.weighted}"
        self.params += [
            ParamSpec(w_name, (filters, c, size, size), "normal", fan_in),
            ParamSpec(b_name, (filters,)),
        ]
        options = (("stride", stride), ("pad", pad), ("layout", self.layout))
        self.layers.append(
            Layer(
                self._name("Conv"),
                conv.convolution,
                reference.convolution,
                (w_name, b_name),
                options=options,
            )
        )
        side = lambda n: (n + 2 * pad - size) // stride + 1  # noqa: E731
        self.shape = (filters, side(h), side(w))

    def pool(self, size: int = 2, stride: int = 2) -> None:
        options = (
            ("pool_h", size),
            ("pool_w", size),
            ("stride", stride),
            ("pad", 0),
            ("layout", self.layout),
        )
        self.layers.append(
            Layer(self._name("Pool"), conv.pooling, reference.pooling, options=options)
        )
        c, h, w = self.shape
        self.shape = (c, (h - size) // stride + 1, (w - size) // stride + 1)

    def batch_norm(self) -> None:
        """After Affine i: params gamma{i}, beta{i}; state running_mean{i}, running_var{i}."""
        i, d = self.weighted, math.prod(self.shape)
        self.params += [ParamSpec(f"gamma{i}", (d,), "ones"), ParamSpec(f"beta{i}", (d,))]
        self.state += [ParamSpec(f"running_mean{i}", (d,)), ParamSpec(f"running_var{i}", (d,))]
        self.layers.append(
            Layer(
                f"BatchNorm{i}",
                norm.batch_norm,
                reference.batch_norm,
                (f"gamma{i}", f"beta{i}"),
                state=(f"running_mean{i}", f"running_var{i}"),
                mode=True,
            )
        )

    def dropout(self, rate: float) -> None:
        self.layers.append(
            Layer(
                self._name("Dropout"),
                norm.dropout,
                reference.dropout,
                random=True,
                mode=True,
                options=(("rate", rate),),
            )
        )

    def affine(self, size: int) -> None:
        self._relayout(False)  # the book flattens in (C, H, W) order
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
    if not values or not all(_checks.is_int(v) and v > 0 for v in values):
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
    batch_norm: bool = False,
    dropout: float = 0.0,
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
        batch_norm: batch norm after each hidden Affine, as MultiLayerNetExtend
            (params ``gamma{i}``, ``beta{i}``; state ``running_mean{i}``,
            ``running_var{i}``; momentum 0.9, eps 1e-6).
        dropout: the book's (non-inverted) dropout after each activation, with
            this ratio; 0 for none. A traced scalar (one model of a sweep)
            always adds the layers.
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
    _checks.one_of("activation", activation, ACTIVATIONS)
    _checks.boolean("batch_norm", batch_norm)
    if _checks.is_number(dropout):
        _checks.ratio("dropout", dropout)
    b = _Builder("multi-layer", (input_size,))
    for size in hidden_sizes:
        b.affine(size)
        if batch_norm:
            b.batch_norm()
        b.activation(activation)
        if not (
            _checks.is_number(dropout) and dropout == 0
        ):  # a traced rate (a sweep): layers always
            b.dropout(float(dropout) if _checks.is_number(dropout) else dropout)
    b.affine(output_size)
    if weight_init_std is None:
        weight_init_std = "he" if activation == "relu" else "xavier"
    return b.build(weight_init_std, weight_decay)


def simple_convnet_net(
    input_shape: Sequence[int] = (1, 28, 28),
    filters: int = 30,
    filter_size: int = 5,
    hidden_size: int = 100,
    output_size: int = 10,
    weight_init_std: float | str = 0.01,
    layout: str = "NHWC",
) -> Network:
    """The book's SimpleConvNet: Conv1 -> Relu1 -> Pool1 -> Affine1 -> Relu2 -> Affine2.

    The convolution is filter_size x filter_size, stride 1, pad 0; the pool
    2x2, stride 2. Params: W1 (30, 1, 5, 5), b1, W2 (4320, 100), b2,
    W3 (100, 10), b3 at the book's sizes.
    """
    b = _Builder("simple-convnet", _image_shape(input_shape), layout)
    filters, filter_size, hidden_size, output_size = _positive_ints(
        "filters, filter_size, hidden_size and output_size",
        (filters, filter_size, hidden_size, output_size),
    )
    b.conv(filters, filter_size)
    b.activation("relu")
    b.pool()
    b.affine(hidden_size)
    b.activation("relu")
    b.affine(output_size)
    return b.build(weight_init_std)


def deep_convnet_net(
    input_shape: Sequence[int] = (1, 28, 28),
    filters: Sequence[int] = (16, 32, 64),
    hidden_size: int = 50,
    output_size: int = 10,
    weight_init_std: float | str = "he",
    layout: str = "NHWC",
) -> Network:
    """The book's DeepConvNet: six 3x3 convolutions, three pools, two Affine, two Dropout.

    conv16 -> relu -> conv16 -> relu -> pool -> conv32 -> relu -> conv32 (pad 2)
    -> relu -> pool -> conv64 -> relu -> conv64 -> relu -> pool -> affine 50 ->
    relu -> dropout 0.5 -> affine 10 -> dropout 0.5; every other convolution
    has pad 1. He init with the book's fan-ins (9, 144, 144, 288, 288, 576,
    1024, 50). Params W1..W8 and b1..b8, W7 (1024, 50). ``filters`` sets the
    three stages' widths (smaller ones make a net quick to check numerically).
    """
    b = _Builder("deep-convnet", _image_shape(input_shape), layout)
    hidden_size, output_size = _positive_ints(
        "hidden_size and output_size", (hidden_size, output_size)
    )
    filters = _positive_ints("filters", filters)
    if len(filters) != 3:
        raise ValueError(f"filters must be the 3 stages' widths, got {filters}")
    for width, pads in zip(filters, ((1, 1), (1, 2), (1, 1)), strict=True):
        for pad in pads:
            b.conv(width, 3, pad=pad)
            b.activation("relu")
        b.pool()
    b.affine(hidden_size)
    b.activation("relu")
    b.dropout(0.5)
    b.affine(output_size)
    b.dropout(0.5)
    return b.build(weight_init_std)


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be one image's (C, H, W), got {shape}")
    return _positive_ints("input_shape", shape)


two_layer = two_layer_net()
"""The book's TwoLayerNet at its sizes: 784-50-10, weight_init_std 0.01."""

simple_convnet = simple_convnet_net()
"""The book's SimpleConvNet: conv 30 5x5 -> pool 2x2 -> affine 100 -> affine 10."""

deep_convnet = deep_convnet_net()
"""The book's DeepConvNet (ch. 8): 6 convolutions, He init, dropout 0.5."""


# --- the registry -------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How the book trains a model: its script's optimizer, rate and length."""

    optimizer: str
    lr: float
    iters: int | None = None
    epochs: float | None = None
    eval_samples: int | None = None  # None: evaluate on every example


@dataclass(frozen=True)
class ModelSpec:
    """One model of :data:`MODELS`.

    Attributes:
        build: ``build(**options) -> Network``, the options named as ``funcbp
            train``'s flags (``hidden``, ``weight_init_std``, ...).
        recipe: the book's training script for it.
        options: the options that apply, with the book's values; an option
            left out does not apply to this model.
        from_params: the network at the sizes of a params dict (e.g. weights
            the book saved).
    """

    build: Callable[..., Network]
    recipe: Recipe
    options: Mapping[str, Any]
    from_params: Callable[[Mapping[str, Any]], Network]


def _two_layer(hidden: Sequence[int], weight_init_std: float | str) -> Network:
    hidden = tuple(hidden)
    if len(hidden) != 1:
        raise ValueError(
            "hidden must be one width for two-layer (use model multi-layer for more), "
            f"got {','.join(map(str, hidden))}"
        )
    return two_layer_net(hidden_size=hidden[0], weight_init_std=weight_init_std)


def _weight_shapes(model: str, params: Mapping[str, Any]) -> list[tuple[int, ...]]:
    shapes = []  # W1, W2, ... as long as they go
    while f"W{len(shapes) + 1}" in params:
        shapes.append(np.shape(params[f"W{len(shapes) + 1}"]))
    if len(shapes) < 2 or any(len(shape) != 2 for shape in shapes):
        raise ValueError(f"params must hold 2-D weights W1, W2, ... for {model}, got {shapes}")
    return shapes


def _two_layer_from(params: Mapping[str, Any]) -> Network:
    (d, h), (_, c) = _weight_shapes("two-layer", params)[:2]
    return two_layer_net(d, h, c)


def _multi_layer_from(params: Mapping[str, Any]) -> Network:
    shapes = _weight_shapes("multi-layer", params)
    widths = [shape[1] for shape in shapes]
    batch_norm = "gamma1" in params
    return network(
        widths[:-1], batch_norm=batch_norm, input_size=shapes[0][0], output_size=widths[-1]
    )


MODELS: dict[str, ModelSpec] = {
    # train_neuralnet.py: SGD 0.1, batch 100, 10,000 iterations.
    "two-layer": ModelSpec(
        _two_layer,
        Recipe("sgd", 0.1, iters=10_000),
        {"hidden": (50,), "weight_init_std": 0.01},
        _two_layer_from,
    ),
    # The book has no one script for MultiLayerNetExtend; its conv nets' recipe.
    "multi-layer": ModelSpec(
        lambda hidden, **options: network(hidden, **options),
        Recipe("adam", 0.001, epochs=20),
        {
            "hidden": (100, 100, 100, 100),
            "activation": "relu",
            "batch_norm": False,
            "dropout": 0.0,
            "weight_decay": 0.0,
            "weight_init_std": None,  # He for ReLU, Xavier for sigmoid
        },
        _multi_layer_from,
    ),
    # train_convnet.py and train_deepnet.py: Adam 0.001, 20 epochs, batch 100, and
    # the Trainer's 1000 examples per evaluation (the final one takes them all).
    "simple-convnet": ModelSpec(
        simple_convnet_net,
        Recipe("adam", 0.001, epochs=20, eval_samples=1000),
        {"weight_init_std": 0.01},
        lambda params: simple_convnet,
    ),
    "deep-convnet": ModelSpec(
        deep_convnet_net,
        Recipe("adam", 0.001, epochs=20, eval_samples=1000),
        {"weight_init_std": "he"},
        lambda params: deep_convnet,
    ),
}
"""The models ``funcbp train --model`` knows; a new network is one entry here."""


def spec(model: str) -> ModelSpec:
    """``MODELS[model]``, or a ValueError naming the models there are."""
    return MODELS[_checks.one_of("model", model, MODELS)]


def build(model: str, options: Mapping[str, Any] | None = None) -> Network:
    """The network ``model`` with ``options`` (the rest the book's); refuses an option that
    does not apply to it, naming the models it applies to."""
    entry = spec(model)
    options = dict(options or {})
    for name in options:
        if name not in entry.options:
            owners = [m for m, s in MODELS.items() if name in s.options]
            raise ValueError(f"{name} applies to {' and '.join(owners)}, not {model}")
    return entry.build(**{**entry.options, **options})


def network_for(model: str, params: Mapping[str, Any]) -> Network:
    """The network named ``model`` at the sizes of ``params``, e.g. weights the book saved.

    The MLPs take their widths from the weights (and batch norm from ``gamma1``);
    the conv nets are the book's. ``params`` is checked against the result.

    Raises:
        ValueError: an unknown model, or params that do not fit it, naming the entry.
    """
    net = spec(model).from_params(params)
    weights, state = net.split(dict(params))
    net.check_params(weights, state if net.state_specs else None)
    return net
