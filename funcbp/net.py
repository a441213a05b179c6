"""Networks as ordered sequences of funcbp layers: the book's OrderedDict, done functionally.

A :class:`Network` runs its :class:`Layer` specs in order, then Softmax-with-Loss.
Everything a layer keeps between calls is passed in and returned: the params
dict (``W1``, ``b1``, ``gamma1``, ... in the book's names and shapes), the
layer state (batch norm's ``running_mean1``, ``running_var1``, ...) and a
PRNG key (dropout's masks). Eval mode is the default; ``train=True`` uses the
batch statistics and dropout masks, as the book's ``train_flg=True`` does.

The loss's gradient comes four ways that must agree (:data:`GRADIENT_METHODS`):
``"manual"`` (``jax.grad`` through the hand-written rules), ``"backprop"``
(an explicit reverse sweep that calls each layer's hand-written ``fwd`` and
``bwd``, with no JAX autodiff, as the book's ``gradient()`` does),
``"autodiff"`` (``jax.grad`` through the plain-jnp twins) and
``"numerical"`` (central differences). All four differentiate the training
loss, as the book's ``gradient()`` does.

Every entry point takes ``compute_dtype`` (mixed precision; None computes in
the params' dtype). Each layer runs in one dtype, its input and params cast to
it from the params given (the master copy): batch norm in its statistics'
dtype (:func:`stats_dtype`, float32 at the least), every other layer in the
compute dtype. The scores come back in the params' dtype, so the loss is taken
there, and the gradients come back in it through the casts' transposes. The
layers themselves keep refusing mixed dtypes: the casts happen here only.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from funcbp import evaluation, layers, norm, reference
from funcbp.gradcheck import numerical_gradient

__all__ = [
    "COMPUTE_DTYPES",
    "GRADIENT_METHODS",
    "Layer",
    "Network",
    "ParamSpec",
    "check_compute_dtype",
    "stats_dtype",
]

Params = dict[str, Array]
State = dict[str, Array]

GRADIENT_METHODS = ("manual", "backprop", "autodiff", "numerical")

COMPUTE_DTYPES = ("bfloat16", "float16", "float32", "float64")
"""The dtypes a network computes in (``compute_dtype``); float16 only for predict."""

_FLOAT16 = (
    "compute_dtype float16 is refused for the loss and its gradients: float16 needs loss "
    "scaling (its largest value is 65504; below 6e-5 it keeps fewer bits, below 6e-8 none), "
    "and loss scaling that works is dynamic, a scale kept and adjusted across training "
    "steps, which a network's pure gradient cannot keep. Use bfloat16, which has float32's "
    "range and needs none; predict and accuracy take float16 (the book's "
    "half_float_network.py)."
)


def check_compute_dtype(
    compute_dtype: DTypeLike | None, *, gradient: bool = True
) -> np.dtype | None:
    """The dtype a network is asked to compute in, as a ``numpy.dtype``; None stays None.

    Args:
        compute_dtype: None (the params' own dtype) or one of :data:`COMPUTE_DTYPES`,
            as a name or a dtype.
        gradient: whether a loss or a gradient will be taken in it, which float16
            cannot do without loss scaling.

    Raises:
        ValueError: naming compute_dtype, what it may be and what came.
    """
    if compute_dtype is None:
        return None
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype must be None or one of {', '.join(COMPUTE_DTYPES)}, "
            f"got {compute_dtype!r}"
        )
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("compute_dtype float64 needs jax_enable_x64 on; it is off")
    if gradient and dtype == jnp.float16:
        raise ValueError(_FLOAT16)
    return dtype


def stats_dtype(dtype: DTypeLike) -> np.dtype:
    """The dtype batch norm keeps its statistics in when computing in ``dtype``: float32 or wider.

    bfloat16 and float16 keep too few bits for a running mean of small updates
    (bfloat16's 8 significant bits round 0.9 * v + 0.1 * batch back to v
    whenever the batch is within a few percent of v), so batch norm
    computes its batch statistics and keeps its running ones in float32.
    """
    dtype = jnp.dtype(dtype)
    return dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


@dataclass(frozen=True)
class Layer:
    """One entry of the sequence, called as ``fn(x, *params, *state, [key], **options)``.

    Attributes:
        name: the book's name for it: ``Affine1``, ``Relu1``, ``Conv1``, ``BatchNorm1``.
        fn: the funcbp layer (a ``jax.custom_vjp`` function).
        twin: its plain-jnp twin from :mod:`funcbp.reference`.
        params: the names of its params, in ``fn``'s argument order (``W1``, ``b1``).
        state: the names of its state, passed after the params; ``fn`` then
            returns ``(out, new_state)`` (batch norm's running statistics).
        random: ``fn`` takes a PRNG key after params and state (dropout).
        mode: ``fn`` takes ``train=`` (batch norm, dropout).
        options: static keyword arguments, e.g. ``(("stride", 1), ("pad", 1))``.
    """

    name: str
    fn: Callable[..., Any]
    twin: Callable[..., Any]
    params: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    random: bool = False
    mode: bool = False
    options: tuple[tuple[str, Any], ...] = ()

    def _args(self, h, params: Params, state: State, key) -> tuple:
        key_arg = (key,) if self.random else ()
        return (h, *(params[p] for p in self.params), *(state[s] for s in self.state), *key_arg)

    def _kwargs(self, train: bool) -> dict[str, Any]:
        return {**dict(self.options), **({"train": train} if self.mode else {})}

    def _split(self, out) -> tuple[Array, State]:
        if not self.state:
            return out, {}
        out, new = out
        return out, dict(zip(self.state, new, strict=True))

    def __call__(self, h, params: Params, state: State, key, *, train: bool, twin: bool = False):
        """``(out, new_state)``: the layer (or its twin) on ``h``."""
        fn = self.twin if twin else self.fn
        return self._split(fn(*self._args(h, params, state, key), **self._kwargs(train)))

    def forward_rule(self, h, params: Params, state: State, key, *, train: bool):
        """The hand-written ``fwd``: ``(out, new_state, saved)``, ``saved`` for the ``bwd``."""
        bound = inspect.signature(self.fn.fun).bind(
            *self._args(h, params, state, key), **self._kwargs(train)
        )
        bound.apply_defaults()
        args = bound.args
        out, residuals = self.fn.fwd(*args)
        out, new_state = self._split(out)
        static = tuple(args[i] for i in self.fn.nondiff_argnums)
        return out, new_state, (static, residuals)

    def backward_rule(self, saved, dout: Array) -> tuple[Array, Params]:
        """The hand-written ``bwd``: ``(dx, {param name: gradient})``."""
        static, residuals = saved
        if self.state:  # no gradient flows back through the new running statistics
            dout = (dout, None)
        dx, *rest = self.fn.bwd(*static, residuals, dout)
        return dx, dict(zip(self.params, rest[: len(self.params)], strict=True))


SOFTMAX_WITH_LOSS = Layer("SoftmaxWithLoss", layers.softmax_with_loss, reference.softmax_with_loss)


@dataclass(frozen=True)
class ParamSpec:
    """One entry of the params (or state) dict: its name, shape and initial value.

    ``init`` is ``"normal"`` (a weight: ``std * normal``, std from
    ``weight_init_std`` and ``fan_in``), ``"zeros"`` or ``"ones"``.
    """

    name: str
    shape: tuple[int, ...]
    init: str = "zeros"
    fan_in: int = 0


@dataclass(frozen=True)
class _Precision:
    """The dtypes of one call: the params' own, the compute dtype and batch norm's."""

    params: np.dtype
    compute: np.dtype
    stats: np.dtype

    def of(self, layer: Layer) -> np.dtype:
        """The dtype ``layer`` runs in: its statistics' for batch norm, else the compute dtype."""
        return self.stats if layer.state else self.compute

    def inputs(self, layer: Layer, h: Array, params: Params) -> tuple[Array, Params]:
        """``(h, params)`` in the dtype ``layer`` runs in; an integer h stays, to be refused."""
        dtype = self.of(layer)
        if jnp.issubdtype(h.dtype, jnp.floating):
            h = h.astype(dtype)
        return h, {name: jnp.asarray(params[name]).astype(dtype) for name in layer.params}


@dataclass(frozen=True)
class Network:
    """Layers in order, then Softmax-with-Loss: the book's networks as pure functions.

    Built by :mod:`funcbp.zoo` (``two_layer``, ``network``, ...), not by hand.

    Attributes:
        name: the model's name, e.g. ``"two-layer"``.
        layers: the sequence before the loss.
        input_shape: one example's shape, e.g. ``(784,)`` or ``(1, 28, 28)``.
        param_specs: every param, in the book's order (``W1``, ``b1``, ...).
        state_specs: every piece of layer state (``running_mean1``, ...).
        weight_init_std: the std of every weight, or ``"he"`` (sqrt(2/fan_in))
            or ``"xavier"`` (sqrt(1/fan_in)).
        weight_decay: lambda of the book's L2 term ``0.5 * lambda * sum(W**2)``.
    """

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    param_specs: tuple[ParamSpec, ...]
    state_specs: tuple[ParamSpec, ...] = ()
    weight_init_std: float | str = 0.01
    weight_decay: float = 0.0

    def __post_init__(self):
        _init_std(self.weight_init_std, 1)  # refuses a bad value now, not at init
        if isinstance(self.weight_decay, jax.core.Tracer):
            return  # one model's lambda in a sweep: a value, checked where it was concrete
        if not (isinstance(self.weight_decay, int | float) and 0 <= self.weight_decay < math.inf):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )

    def __repr__(self) -> str:
        """The book's OrderedDict: the layers in order, each with its params' names and shapes."""
        shapes = {s.name: s.shape for s in (*self.param_specs, *self.state_specs)}
        rows = [
            (layer.name, ", ".join(f"{p} {shapes[p]}" for p in (*layer.params, *layer.state)))
            for layer in (*self.layers, self.last_layer)
        ]
        width = max(len(name) for name, _ in rows)
        body = "\n".join(f"  {name:<{width}}  {params}".rstrip() for name, params in rows)
        return (
            f"Network({self.name!r}, input (N, {', '.join(map(str, self.input_shape))})):\n{body}"
        )

    @property
    def decays(self) -> bool:
        """Whether the loss has the weight-decay term: a nonzero or a traced lambda."""
        return isinstance(self.weight_decay, jax.core.Tracer) or bool(self.weight_decay)

    @property
    def last_layer(self) -> Layer:
        return SOFTMAX_WITH_LOSS

    @property
    def weights(self) -> tuple[str, ...]:
        """The params that weight decay applies to: the weights, not biases or gammas."""
        return tuple(s.name for s in self.param_specs if s.init == "normal")

    @property
    def random(self) -> bool:
        """Whether training mode needs a PRNG key (the net has dropout)."""
        return any(layer.random for layer in self.layers)

    def replace(self, **changes) -> Network:
        """A copy with some fields changed, e.g. ``net.replace(weight_decay=0.1)``."""
        return dataclasses.replace(self, **changes)

    # --- params and state ---------------------------------------------------

    def init(
        self, key: Array, *, weight_init_std: float | str | None = None, dtype=jnp.float32
    ) -> Params:
        """The book's initialization: Gaussian weights, zero biases and betas, unit gammas.

        Args:
            key: a ``jax.random`` key.
            weight_init_std: overrides the network's own (a number, ``"he"`` or ``"xavier"``).
            dtype: float32 or float64.

        Returns:
            ``{"W1": ..., "b1": ..., ...}`` with the shapes of :attr:`param_specs`.
        """
        std = self.weight_init_std if weight_init_std is None else weight_init_std
        stds = tuple(
            _init_std(std, s.fan_in) if s.init == "normal" else 0.0 for s in self.param_specs
        )
        params = _init_params(key, self.param_specs, stds, jnp.dtype(dtype))
        return {s.name: params[s.name] for s in self.param_specs}  # the book's order, not sorted

    def init_state(self, dtype=jnp.float32) -> State:
        """The layer state before training: zero running statistics, as the book starts them.

        ``running_var`` starts at 0, as the book's ``np.zeros(D)`` does, so in eval
        mode before any training step batch norm divides by ``sqrt(0 + 1e-6)``:
        activations 1000 times too large, and a huge loss. Train first, or
        evaluate in train mode.

        Args:
            dtype: the dtype the network computes in; the statistics are kept in
                :func:`stats_dtype` of it (float32 for bfloat16 and float16).
        """
        return {s.name: jnp.zeros(s.shape, stats_dtype(dtype)) for s in self.state_specs}

    def split(self, arrays: dict[str, Any]) -> tuple[Params, State]:
        """``(params, state)`` of one flat dict, as ``params.npz`` or the book's files hold them."""
        names = {s.name for s in self.state_specs}
        params = {k: v for k, v in arrays.items() if k not in names}
        return params, {k: v for k, v in arrays.items() if k in names}

    def check_params(self, params: Params, state: State | None = None) -> None:
        """Raises ValueError unless ``params`` (and ``state``) have this network's names and shapes.

        Every unknown and every missing name is listed. ``state`` is checked when
        given, or when the network has state. Only names and shapes are read,
        never values: under ``jit`` the check runs once, when tracing.
        """
        groups = [("params", params, self.param_specs)]
        if state is not None or self.state_specs:
            groups.append(("state", state, self.state_specs))
        for what, tree, specs in groups:
            names = [s.name for s in specs]
            expected = f"{what} must hold {', '.join(names) or 'nothing'} for {self.name}"
            if what == "state" and tree is None:
                raise ValueError(f"{expected}'s batch norm (see init_state), got None")
            if not isinstance(tree, Mapping):
                raise ValueError(f"{expected}, got {type(tree).__name__}")
            problems = _unknown_and_missing(list(tree), names, self._hint(what))
            if problems:
                raise ValueError(f"{expected}; {problems}")
            for s in specs:
                shape = tuple(jnp.shape(tree[s.name]))
                if shape != s.shape:
                    raise ValueError(
                        f"{what}[{s.name!r}] must have shape {s.shape} for {self.name}, got {shape}"
                    )

    def _hint(self, what: str) -> dict[str, str]:
        """Why a name may be in the wrong dict: state among the params, or the reverse."""
        state = {s.name for s in self.state_specs}
        if what == "params":
            return dict.fromkeys(state, "layer state: pass it as state, see split")
        return {s.name: "a param: pass it in params" for s in self.param_specs}

    def _checked(self, params: Params, state: State | None, compute_dtype) -> tuple:
        """``(precision, state)``: the one check that every forward, loss and gradient makes.

        Names, shapes and dtypes are static, so under ``jit`` this runs once per
        trace and costs nothing per step.
        """
        self.check_params(params, state)
        dtypes = {name: jnp.result_type(v) for name, v in params.items()}
        if len(set(dtypes.values())) != 1 or not jnp.issubdtype(
            next(iter(dtypes.values())), jnp.floating
        ):
            got = ", ".join(f"{name}: {dtype}" for name, dtype in dtypes.items())
            raise TypeError(f"params must share one floating-point dtype, got {got}")
        own = np.dtype(next(iter(dtypes.values())))
        compute = check_compute_dtype(compute_dtype, gradient=False) or own
        precision = _Precision(own, compute, stats_dtype(compute))
        state = state or {}
        for name, v in state.items():
            if jnp.result_type(v) != precision.stats:
                raise TypeError(
                    f"state[{name!r}] must have dtype {precision.stats}, the dtype batch norm "
                    f"keeps its statistics in when computing in {compute} (see init_state), "
                    f"got {jnp.result_type(v)}"
                )
        return precision, state

    # --- forward --------------------------------------------------------------

    def forward(self, params: Params, x: ArrayLike, state: State | None = None, *,
                train: bool = False, key: Array | None = None, twins: bool = False,
                start: int = 0, compute_dtype: DTypeLike | None = None,
                ) -> tuple[Array, State]:  # fmt: skip
        """``(scores, new_state)``: layers ``start..`` in order, each in its ``jax.named_scope``.

        ``twins`` runs the plain-jnp twins instead of the hand-written layers.
        ``compute_dtype`` (None: the params' dtype) is the dtype the layers run
        in; batch norm runs in :func:`stats_dtype` of it. The scores come back
        in the params' dtype.
        """
        precision, state = self._checked(params, state, compute_dtype)
        keys = self._keys(train, key)
        # From a later layer (a fused first layer), x is that layer's input, not an image.
        h = self._input(x) if start == 0 else jnp.asarray(x)
        new_state = dict(state)
        for i, layer in enumerate(self.layers[start:], start):
            with jax.named_scope(layer.name):
                h, p = precision.inputs(layer, h, params)
                h, updated = layer(h, p, state, keys.get(i), train=train, twin=twins)
            new_state.update(updated)
        return h.astype(precision.params), new_state

    def predict(self, params: Params, x: ArrayLike, state: State | None = None, *,
                train: bool = False, key: Array | None = None,
                compute_dtype: DTypeLike | None = None):  # fmt: skip
        """Scores (N, C): the last Affine's output; softmax is only for the loss.

        Eval mode by default, as the book's ``predict(x, train_flg=False)``;
        with ``train=True`` (which needs ``key`` if the net has dropout) it
        returns ``(scores, new_state)``. ``compute_dtype`` as in :meth:`forward`;
        float16 is accepted here, as the book's half_float_network.py runs it.
        """
        scores, new_state = self.forward(
            params, x, state, train=train, key=key, compute_dtype=compute_dtype
        )
        return (scores, new_state) if train else scores

    def loss(self, params: Params, x: ArrayLike, t: ArrayLike, state: State | None = None,
             *, train: bool = False, key: Array | None = None,
             compute_dtype: DTypeLike | None = None):  # fmt: skip
        """Mean Softmax-with-Loss (plus weight decay); t one-hot (N, C) or indices (N,).

        A scalar in eval mode; ``(loss, new_state)`` with ``train=True``. The
        layers run in ``compute_dtype`` (see :meth:`forward`); the loss and the
        weight decay are taken in the params' dtype.
        """
        return self._loss(
            params, x, t, state, train=train, key=key, twins=False, compute_dtype=compute_dtype
        )

    def reference_loss(self, params: Params, x: ArrayLike, t: ArrayLike,
                       state: State | None = None, *, train: bool = False,
                       key: Array | None = None,
                       compute_dtype: DTypeLike | None = None):  # fmt: skip
        """:meth:`loss` through the plain-jnp twins, for ``jax.grad`` to differentiate."""
        return self._loss(
            params, x, t, state, train=train, key=key, twins=True, compute_dtype=compute_dtype
        )

    def _loss(self, params, x, t, state, *, train, key, twins, start=0, compute_dtype=None):
        check_compute_dtype(compute_dtype)  # a loss is for differentiating: no float16
        scores, new_state = self.forward(
            params, x, state, train=train, key=key, twins=twins, start=start,
            compute_dtype=compute_dtype,
        )  # fmt: skip
        last = self.last_layer
        with jax.named_scope(last.name):
            loss = (last.twin if twins else last.fn)(scores, t)
        if self.decays:
            loss = loss + self.decay_loss(params, twins=twins)
        return (loss, new_state) if train else loss

    def decay_loss(self, params: Params, *, twins: bool = False) -> Array:
        """The book's ``0.5 * lambda * sum(W**2)`` over the weights; 0 without weight decay."""
        if not self.decays:
            return jnp.zeros((), jnp.result_type(*params.values()))
        fn = reference.weight_decay if twins else norm.weight_decay
        with jax.named_scope("WeightDecay"):
            return fn(tuple(params[w] for w in self.weights), self.weight_decay)

    def accuracy(self, params: Params, x: ArrayLike, t: ArrayLike, state: State | None = None,
                 *, compute_dtype: DTypeLike | None = None):  # fmt: skip
        """The fraction of rows whose highest score (eval mode) is the label."""
        return evaluation.accuracy(self, params, x, t, state, compute_dtype=compute_dtype)

    # --- gradients --------------------------------------------------------------

    def value_and_grad(self, params: Params, x: ArrayLike, t: ArrayLike,
                       state: State | None = None, *, key: Array | None = None,
                       method: str = "manual", compute_dtype: DTypeLike | None = None,
                       ) -> tuple[tuple[Array, State], Params]:  # fmt: skip
        """``((loss, new_state), grads)`` of the training loss, by one of the gradient methods.

        The grads come in the params' dtype whatever ``compute_dtype`` the
        layers run in (see :meth:`forward`); float16 is refused (see
        :func:`check_compute_dtype`).
        """
        loss = partial(
            self.reference_loss if method == "autodiff" else self.loss,
            train=True, key=key, compute_dtype=compute_dtype,
        )  # fmt: skip
        if method in ("manual", "autodiff"):
            return jax.value_and_grad(loss, has_aux=True)(params, x, t, state)
        if method == "backprop":
            return self._backprop(params, x, t, state, key, compute_dtype)
        if method == "numerical":
            grads = numerical_gradient(lambda p: loss(p, x, t, state)[0], params)
            return loss(params, x, t, state), grads
        raise ValueError(f"method must be one of {', '.join(GRADIENT_METHODS)}, got {method!r}")

    def gradient(self, params: Params, x: ArrayLike, t: ArrayLike, state: State | None = None,
                 *, key: Array | None = None, method: str = "manual",
                 compute_dtype: DTypeLike | None = None) -> Params:  # fmt: skip
        """The training loss's gradient by one of :data:`GRADIENT_METHODS`; they agree."""
        return self.value_and_grad(
            params, x, t, state, key=key, method=method, compute_dtype=compute_dtype
        )[1]

    def backprop(self, params: Params, x: ArrayLike, t: ArrayLike, state: State | None = None,
                 *, key: Array | None = None,
                 compute_dtype: DTypeLike | None = None) -> Params:  # fmt: skip
        """The book's ``gradient()``: forward, then each hand-written backward in reverse.

        No JAX autodiff is involved: every ``fwd`` keeps its residuals, and
        every ``bwd`` is called with them and the upstream ``dout``. Under a
        ``compute_dtype`` the sweep also transposes the casts: ``dout`` goes into
        each layer's dtype, and each gradient into its param's.
        """
        return self._backprop(params, x, t, state, key, compute_dtype)[1]

    def _backprop(self, params, x, t, state, key, compute_dtype):
        check_compute_dtype(compute_dtype)
        precision, state = self._checked(params, state, compute_dtype)
        keys = self._keys(True, key)
        h, new_state, saved = self._input(x), dict(state), []
        for i, layer in enumerate(self.layers):
            h, p = precision.inputs(layer, h, params)
            h, updated, s = layer.forward_rule(h, p, state, keys.get(i), train=True)
            new_state.update(updated)
            saved.append(s)
        loss, residuals = self.last_layer.fn.fwd(h.astype(precision.params), t, "mean")
        dout, _ = self.last_layer.fn.bwd("mean", residuals, jnp.ones_like(loss))

        grads = {}
        if self.decays:
            weights = tuple(params[w] for w in self.weights)
            decay, residuals = norm.weight_decay.fwd(weights, self.weight_decay)
            dweights, _ = norm.weight_decay.bwd(residuals, jnp.ones_like(decay))
            loss = loss + decay
            grads.update(zip(self.weights, dweights, strict=True))
        for layer, s in zip(reversed(self.layers), reversed(saved), strict=True):
            dout, dparams = layer.backward_rule(s, dout.astype(precision.of(layer)))
            for name, g in dparams.items():
                g = g.astype(precision.params)
                grads[name] = grads[name] + g if name in grads else g
        return (loss, new_state), {name: grads[name] for name in params}

    # --- helpers ----------------------------------------------------------------

    def _input(self, x: ArrayLike) -> Array:
        """x as an array, refused by name unless it has (N, *input_shape)."""
        x = jnp.asarray(x)
        # An MLP flattens any (N, ...) of the right size, as the book's Affine does;
        # the conv nets take images of exactly their input shape.
        fits = (
            math.prod(x.shape[1:]) == math.prod(self.input_shape)
            if len(self.input_shape) == 1
            else x.shape[1:] == self.input_shape
        )
        if x.ndim < 2 or not fits:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"x must have shape (N, {shape}) for {self.name}, got {x.shape}")
        return x

    def _keys(self, train: bool, key) -> dict[int, Array]:
        """Layer index -> key, in training mode: ``fold_in(key, k)`` for the k-th dropout layer.

        Counting dropout layers, not all layers, keeps the masks the same
        whatever else the sequence holds (such as the layout transposes).
        """
        random = [i for i, layer in enumerate(self.layers) if layer.random]
        if not (train and random):
            return {}
        if key is None:
            raise ValueError(
                f"key must be a PRNG key: {self.name} has dropout in train mode, got None"
            )
        return {i: jax.random.fold_in(key, k) for k, i in enumerate(random, 1)}


def _unknown_and_missing(given: list, names: list[str], hints: dict[str, str]) -> str:
    """``"unknown: W9; missing: b2"`` (empty when the names match), each unknown name hinted."""
    unknown = [f"{k} ({hints[k]})" if k in hints else str(k) for k in given if k not in names]
    missing = [n for n in names if n not in given]
    parts = (("unknown", unknown), ("missing", missing))
    return "; ".join(f"{what}: {', '.join(ks)}" for what, ks in parts if ks)


def _init_std(weight_init_std: float | str, fan_in: int) -> float:
    if weight_init_std in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if weight_init_std in ("xavier", "sigmoid"):
        return math.sqrt(1.0 / fan_in)
    if (
        isinstance(weight_init_std, int | float)
        and not isinstance(weight_init_std, bool)
        and 0 < weight_init_std < math.inf
    ):
        return float(weight_init_std)
    raise ValueError(
        f"weight_init_std must be a positive finite number, 'he' or 'xavier', "
        f"got {weight_init_std!r}"
    )


# One compiled program for all the params: jax.random compiles per shape otherwise.
@partial(jax.jit, static_argnums=(1, 2, 3))
def _init_params(
    key: Array, specs: tuple[ParamSpec, ...], stds: tuple[float, ...], dtype
) -> Params:
    # One draw for all the weights, cut into pieces: a draw per weight compiles a
    # random-number program per shape, seconds for DeepConvNet's sixteen params.
    sizes = [math.prod(s.shape) for s in specs if s.init == "normal"]
    noise = iter(jnp.split(jax.random.normal(key, (sum(sizes),), dtype), np.cumsum(sizes)[:-1]))
    params = {}
    for spec, std in zip(specs, stds, strict=True):
        if spec.init == "normal":
            params[spec.name] = std * next(noise).reshape(spec.shape)
        elif spec.init == "ones":
            params[spec.name] = jnp.ones(spec.shape, dtype)
        else:
            params[spec.name] = jnp.zeros(spec.shape, dtype)
    return params
