"""Sections 5.4 and 5.7 as transcripts: each layer's forward and backward, in order.

:func:`apple_layers` runs :func:`funcbp.examples.buy_apple_layers` and shows
its code with the values it computed. :func:`backprop_calls` runs a network's
own ``backprop`` sweep and records every forward and backward rule it runs, so
the transcript is the sweep itself, not a copy of it.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcbp.chapter5.text import words
from funcbp.examples import APPLE, book_number, buy_apple_layers
from funcbp.graph.render import format_value
from funcbp.net import Layer, Network

__all__ = ["Call", "apple_layers", "backprop_calls", "sweep_transcript", "two_layer_sweep"]


def apple_layers(lang: str = "en") -> str:
    """The code of :func:`~funcbp.examples.buy_apple_layers` and its values, in order."""
    source = inspect.getsource(buy_apple_layers)
    body = source[source.index("    # forward") : source.index("    forward = {")]
    floats = [jnp.asarray(v, float) for v in APPLE.values()]
    forward, backward = buy_apple_layers(*floats)
    w = words(lang)
    lines = [f"{k} = {book_number(v)}" for k, v in {**forward, **backward}.items()]
    return "\n".join(
        [textwrap.dedent(body).rstrip(), "", f"# {w['values']}", *(f"# {line}" for line in lines)]
    )


@dataclass(frozen=True)
class Call:
    """One call of a layer's rule, ``Affine1.forward`` or ``.backward``: its arrays in and out.

    Attributes:
        layer, rule: ``Affine1`` and ``forward`` or ``backward``.
        inputs, outputs: the arrays by name: ``x``, ``out``; ``dout``, ``dx``, ``dW1``.
        kept: what a forward keeps for its backward (the book's ``self.x``, ``self.mask``).
    """

    layer: str
    rule: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    kept: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Recorded(Layer):
    calls: list = field(default_factory=list, compare=False)

    def forward_rule(self, h, params, state, key, *, train):
        out, new_state, saved = super().forward_rule(h, params, state, key, train=train)
        kept = tuple(jax.tree.leaves(saved[1]))
        self.calls.append(Call(self.name, "forward", {"x": h}, {"out": out}, kept))
        return out, new_state, saved

    def backward_rule(self, saved, dout):
        dx, dparams = super().backward_rule(saved, dout)
        grads = {"dx": dx, **{f"d{name}": g for name, g in dparams.items()}}
        self.calls.append(Call(self.name, "backward", {"dout": dout}, grads))
        return dx, dparams


@dataclass(frozen=True)
class _RecordingNetwork(Network):
    """The same network, whose layers and last layer record each rule they run."""

    calls: list = field(default_factory=list, compare=False)

    @property
    def last_layer(self) -> Layer:
        last, calls = super().last_layer, self.calls

        def fwd(h, t, *static):
            loss, residuals = last.fn.fwd(h, t, *static)
            kept = tuple(jax.tree.leaves(residuals))
            calls.append(Call(last.name, "forward", {"x": h, "t": t}, {"loss": loss}, kept))
            return loss, residuals

        def bwd(*args):
            dx, dt = last.fn.bwd(*args)
            calls.append(Call(last.name, "backward", {"dout": args[-1]}, {"dx": dx}))
            return dx, dt

        return dataclasses.replace(last, fn=SimpleNamespace(fwd=fwd, bwd=bwd))


def backprop_calls(net: Network, params, x, t) -> tuple[list[Call], dict[str, jax.Array]]:
    """Runs ``net.backprop(params, x, t)``; returns the rules it called, in order, and the grads."""
    calls: list[Call] = []
    layers = tuple(
        _Recorded(
            **{f.name: getattr(layer, f.name) for f in dataclasses.fields(Layer)}, calls=calls
        )
        for layer in net.layers
    )
    fields = {f.name: getattr(net, f.name) for f in dataclasses.fields(Network)}
    recording = _RecordingNetwork(**{**fields, "layers": layers}, calls=calls)
    grads = recording.backprop(params, x, t)
    return calls, grads


def sweep_transcript(calls: list[Call], lang: str = "en") -> str:
    """The forward calls, then the backward ones: ``Affine1.forward  x (3, 784) -> out (3, 50)``."""
    w = words(lang)
    lines = []
    for rule in ("forward", "backward"):
        header = w[rule]
        lines.append(f"# {header}")
        for c in calls:
            if c.rule != rule:
                continue
            ins = ", ".join(f"{k} {_brief(v)}" for k, v in c.inputs.items())
            outs = ", ".join(f"{k} {_brief(v)}" for k, v in c.outputs.items())
            kept = f"   {w['keeps']} " + ", ".join(_brief(v) for v in c.kept) if c.kept else ""
            lines.append(f"{c.layer + '.' + c.rule:<25} {ins:<24} -> {outs}{kept}")
    return "\n".join(lines)


def _brief(x: Any) -> str:
    x = np.asarray(x)
    if x.ndim == 0:
        return format_value(x)
    if x.dtype == bool:
        return f"{format_value(x, 0)} ({int(x.sum())} True)"
    return format_value(x, 0).split(" mean")[0]


def two_layer_sweep(lang: str = "en") -> str:
    """The network's repr and its backprop sweep's transcript on the first 3 training digits."""
    from funcbp.data import load_mnist
    from funcbp.zoo import two_layer

    (x, t), _ = load_mnist("mnist-5k", one_hot_label=True)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = two_layer.init(jax.random.key(0), dtype=dtype)
    calls, _ = backprop_calls(
        two_layer, params, jnp.asarray(x[:3], dtype), jnp.asarray(t[:3], dtype)
    )
    return f"{two_layer!r}\n\n{sweep_transcript(calls, lang)}"
