"""The book's ch06/optimizer_compare_naive.py: four optimizers' paths on x²/20 + y².

Each optimizer is optax's twin of the book's (:func:`funcbp.config.make_optimizer`),
30 steps from (-7, 2) in one jitted ``lax.scan``; the path is the 30 points the
book plots, each taken before its step. Nothing is random, so there are no seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcbp.config import make_optimizer
from funcbp.experiments._plot import new_figure
from funcbp.experiments._run import Claim

# The book's name, funcbp's optimizer and the rate the script gives it.
OPTIMIZERS = (("SGD", "sgd", 0.95), ("Momentum", "momentum", 0.1),
              ("AdaGrad", "adagrad", 1.5), ("Adam", "adam", 0.3))  # fmt: skip
START, STEPS = (-7.0, 2.0), 30
# The contour grid and the cut above which the book blanks f, for simple contour lines.
GRID = {"x": (-10.0, 10.0, 0.01), "y": (-5.0, 5.0, 0.01), "blank_above": 7.0}


def f(p: jax.Array) -> jax.Array:
    """The book's f(x, y) = x²/20 + y², at p = (x, y)."""
    return p[0] ** 2 / 20.0 + p[1] ** 2


def path(opt: optax.GradientTransformation, steps: int = STEPS) -> np.ndarray:
    """(steps, 2): the point before each of ``steps`` updates, from :data:`START`."""

    def step(carry, _):
        p, state = carry
        # optax's adam raises Python floats to an int32 count, which strict promotion refuses.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(jax.grad(f)(p), state, p)
        return (optax.apply_updates(p, updates), state), p

    p0 = jnp.asarray(START, jnp.float32)
    _, points = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), length=steps))(p0)
    return np.asarray(points, np.float64)


def compute(settings, out, log, stop=None) -> dict:
    paths = {name: path(make_optimizer(kind, lr)).tolist() for name, kind, lr in OPTIMIZERS}
    rates = {name: lr for name, _, lr in OPTIMIZERS}
    return {"start": START, "steps": STEPS, "lr": rates, "paths": paths, "contour": GRID}


def _sign_changes(points: np.ndarray) -> int:
    y = np.sign(points[:, 1])
    return int(np.sum(y[1:] * y[:-1] < 0))


def claims(results) -> list[Claim]:
    paths = {k: np.asarray(v) for k, v in results["paths"].items()}
    flips = {k: _sign_changes(p) for k, p in paths.items()}
    distances = {k: np.hypot(p[:, 0], p[:, 1]) for k, p in paths.items()}
    ends = {k: float(d[-1]) for k, d in distances.items()}
    # For the reader: when each first came within 0.5 (Momentum gets there, then swings past).
    near = {k: int(np.argmax(d < 0.5)) if (d < 0.5).any() else None for k, d in distances.items()}
    moves = results["steps"] - 1
    others = [k for k in paths if k != "SGD"]
    return [
        Claim(
            "SGD zig-zags: its y changes sign at more than half of its steps",
            flips["SGD"] > moves / 2,
            ", ".join(f"{k} {n}/{moves}" for k, n in flips.items()),
        ),
        Claim(
            "the others reach the minimum faster: each ends its 30 points nearer (0, 0) than SGD",
            all(ends[k] < ends["SGD"] for k in others),
            "distance at the last point: "
            + ", ".join(f"{k} {d:.3f}" for k, d in ends.items())
            + "; first point within 0.5: "
            + ", ".join(f"{k} {'none' if n is None else n + 1}" for k, n in near.items()),
        ),
    ]


def figure(results):
    grid = results["contour"]
    x, y = (np.arange(*grid[axis]) for axis in ("x", "y"))
    grid_x, grid_y = np.meshgrid(x, y)
    z = grid_x**2 / 20.0 + grid_y**2
    z[z > grid["blank_above"]] = 0
    fig, axes = new_figure(2, 2, size=(9, 8))
    for ax, (name, points) in zip(axes.flat, results["paths"].items(), strict=True):
        points = np.asarray(points)
        ax.plot(points[:, 0], points[:, 1], "o-", color="red", ms=4)
        ax.contour(grid_x, grid_y, z)
        ax.plot(0, 0, "+", ms=12, color="black")
        ax.set(xlim=(-10, 10), ylim=(-10, 10), xlabel="x", ylabel="y")
        ax.set_title(f"{name} (lr {results['lr'][name]})")
    return fig
