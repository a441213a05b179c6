"""The book's ch06/weight_init_activation_histogram.py: activations through 5 layers of 100.

As the book's script does, a (1000, 100) standard-normal input goes through five
layers, each ``sigmoid`` or ``relu`` of ``x @ W`` (funcbp's Affine with a zero
bias, and its activations), W drawn as ``randn(100, 100) * scale``: 1, 0.01,
Xavier's sqrt(1/100) or He's sqrt(2/100). Each activation runs all its scales
and seeds in one program (``vmap``); the histograms are NumPy's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from funcbp import layers
from funcbp.experiments._plot import new_figure
from funcbp.experiments._run import Claim

ROWS, NODES, LAYERS, BINS = 1000, 100, 5, 30
XAVIER, HE = math.sqrt(1.0 / NODES), math.sqrt(2.0 / NODES)
# (activation, the book's label, scale): its three sigmoid and three ReLU runs.
SETTINGS = (
    ("sigmoid", "std 1", 1.0),
    ("sigmoid", "std 0.01", 0.01),
    ("sigmoid", "Xavier", XAVIER),
    ("relu", "std 0.01", 0.01),
    ("relu", "Xavier", XAVIER),
    ("relu", "He", HE),
)
EDGE = 0.05  # "saturated": within this of sigmoid's 0 or 1
ACTIVATIONS = {"sigmoid": layers.sigmoid, "relu": layers.relu}


def activations(activation: str, scale, key: jax.Array) -> jax.Array:
    """(LAYERS, ROWS, NODES): each layer's output for one random input and its weights."""
    keys = jax.random.split(key, LAYERS + 1)
    f32 = jnp.float32  # whatever the x64 setting
    h, outputs, bias = jax.random.normal(keys[0], (ROWS, NODES), f32), [], jnp.zeros(NODES, f32)
    for k in keys[1:]:
        w = jax.random.normal(k, (NODES, NODES), f32) * scale
        h = ACTIVATIONS[activation](layers.affine(h, w, bias))
        outputs.append(h)
    return jnp.stack(outputs)


def _statistics(a: np.ndarray) -> dict[str, list]:
    """Per seed and layer of ``a`` (seeds, layers, rows, nodes): the histogram and moments."""
    a = a.reshape(*a.shape[:2], -1)
    counts = np.apply_along_axis(lambda v: np.histogram(v, BINS, range=(0.0, 1.0))[0], -1, a)
    stats = {"counts": counts, "mean": a.mean(axis=-1), "std": a.std(axis=-1),
             "saturated": np.mean((a < EDGE) | (a > 1 - EDGE), axis=-1),
             "zero": np.mean(a == 0, axis=-1)}  # fmt: skip
    return {k: v.tolist() for k, v in stats.items()}


def compute(settings, out, log, stop=None) -> dict:
    keys = jax.random.split(jax.random.key(settings.seed), settings.seeds)
    panels = []
    for activation in ACTIVATIONS:
        rows = [(label, scale) for act, label, scale in SETTINGS if act == activation]
        scales = jnp.asarray([scale for _, scale in rows], jnp.float32)
        per_seed = jax.vmap(lambda s, k, a=activation: activations(a, s, k), in_axes=(None, 0))
        outputs = np.asarray(jax.jit(jax.vmap(per_seed, in_axes=(0, None)))(scales, keys))
        for (label, scale), a in zip(rows, outputs, strict=True):
            panels.append({"activation": activation, "init": label, "scale": scale,
                           **_statistics(a)})  # fmt: skip
    # Each statistic is (seeds, layers); counts (seeds, layers, bins).
    return {"rows": ROWS, "nodes": NODES, "layers": LAYERS, "bins": BINS, "edge": EDGE,
            "panels": panels}  # fmt: skip


def _panel(results, activation, label) -> dict[str, np.ndarray]:
    (panel,) = (p for p in results["panels"] if (p["activation"], p["init"]) == (activation, label))
    return {
        k: np.asarray(v).mean(axis=0) for k, v in panel.items() if k in ("mean", "std", "saturated")
    }


def _per_layer(values) -> str:
    return "/".join(f"{v:.3f}" for v in values)


def claims(results) -> list[Claim]:
    one, small, xavier = (_panel(results, "sigmoid", s) for s in ("std 1", "std 0.01", "Xavier"))
    relu = {s: _panel(results, "relu", s) for s in ("std 0.01", "Xavier", "He")}
    ratio = {s: p["std"][-1] / p["std"][0] for s, p in relu.items()}
    return [
        Claim(
            "sigmoid, std 1: the activations saturate at 0 and 1 (most within 0.05 of them, "
            "every layer)",
            bool((one["saturated"] > 0.5).all()),
            f"share within 0.05 of 0 or 1, layers 1-5: {_per_layer(one['saturated'])}",
        ),
        Claim(
            "sigmoid, std 0.01: the activations collapse to 0.5 (std below 0.05, every layer)",
            bool((small["std"] < 0.05).all()),
            f"std {_per_layer(small['std'])}, mean {_per_layer(small['mean'])}",
        ),
        Claim(
            "sigmoid, Xavier: the activations stay spread (std above 0.1 and under 10% within "
            "0.05 of 0 or 1, every layer)",
            bool((xavier["std"] > 0.1).all() and (xavier["saturated"] < 0.1).all()),
            f"std {_per_layer(xavier['std'])}, saturated {_per_layer(xavier['saturated'])}",
        ),
        Claim(
            "ReLU, He keeps the spread (layer 5's std within a factor 2 of layer 1's) where "
            "std 0.01 and Xavier shrink it (below half)",
            bool(0.5 <= ratio["He"] <= 2 and ratio["std 0.01"] < 0.5 and ratio["Xavier"] < 0.5),
            "std at layer 5 / layer 1: " + ", ".join(f"{s} {r:.3g}" for s, r in ratio.items()),
        ),
    ]


def figure(results):
    panels, layers = results["panels"], results["layers"]
    fig, axes = new_figure(len(panels), layers, size=(2.6 * layers, 2.0 * len(panels)))
    edges = np.linspace(0, 1, results["bins"] + 1)
    for row, panel in zip(axes, panels, strict=True):
        counts = np.asarray(panel["counts"], np.float64)  # (seeds, layers, bins)
        for i, ax in enumerate(row):
            std = counts[:, i].std(axis=0, ddof=1) if len(counts) > 1 else None
            ax.bar(edges[:-1], counts[:, i].mean(axis=0), width=np.diff(edges), align="edge",
                   yerr=std, error_kw={"lw": 0.6})  # fmt: skip
            ax.set(xlim=(0, 1), ylim=(0, 7000))
            ax.set_title(f"{i + 1}-layer", fontsize=9)
            if i:
                ax.set_yticks([])
        row[0].set_ylabel(f"{panel['activation']}\n{panel['init']}")
    seeds = len(panels[0]["counts"])
    fig.suptitle(f"activations per layer; bars: mean over {seeds} seeds, ± std")
    return fig
