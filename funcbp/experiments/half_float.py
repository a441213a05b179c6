"""The book's ch08/half_float_network.py: DeepConvNet's test accuracy in four float types.

The same weights and test images are cast to float64, float32, float16 and
bfloat16 (the book casts to float16 only), and the network runs in that type
throughout. float64 needs JAX's x64 mode, which this experiment turns on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcbp.experiments._models import predict, test_set, trained
from funcbp.experiments._run import Claim

DTYPES = ("float64", "float32", "float16", "bfloat16")
ALMOST_NOTHING = 0.001  # one digit in a thousand


def compute(settings, out, log, stop=None) -> dict:
    jax.config.update("jax_enable_x64", True)
    models = trained(settings, out, "deep-convnet", log, stop)
    x, t = test_set(settings, models.net)
    accuracy = {d: [] for d in DTYPES}
    changed = {d: [] for d in DTYPES}  # predictions that differ from float64's
    for params, state in zip(models.params, models.layer_state, strict=True):
        reference = None
        for name in DTYPES:
            predicted = predict(models.net, params, state, x, jnp.dtype(name)).argmax(axis=1)
            reference = predicted if reference is None else reference
            accuracy[name].append(float(np.mean(predicted == t)))
            changed[name].append(int(np.sum(predicted != reference)))
    return {"source": models.source, "test_size": len(t), "dtypes": list(DTYPES),
            "accuracy": accuracy, "changed_predictions": changed}  # fmt: skip


def claims(results) -> list[Claim]:
    accuracy = {k: np.asarray(v) for k, v in results["accuracy"].items()}
    loss = float(np.mean(accuracy["float64"] - accuracy["float16"]))
    shown = ", ".join(f"{k} {v.mean():.4f}" for k, v in accuracy.items())
    changed = {k: sum(results["changed_predictions"][k]) for k in ("float16", "bfloat16")}
    total = results["test_size"] * len(accuracy["float64"])
    return [
        Claim(
            f"float16 loses almost nothing: at most {ALMOST_NOTHING} below float64 "
            "(book: 0.9797 -> 0.9798)",
            loss <= ALMOST_NOTHING,
            f"{shown}; of {total} predictions float16 changed {changed['float16']}, "
            f"bfloat16 {changed['bfloat16']}",
        )
    ]


def figure(results):
    from funcbp.experiments._plot import new_figure

    fig, axes = new_figure(size=(6, 4))
    ax = axes[0, 0]
    values = [np.asarray(results["accuracy"][d]) for d in results["dtypes"]]
    means = [v.mean() for v in values]
    stds = [v.std(ddof=1) for v in values] if len(values[0]) > 1 else None
    bars = ax.bar(results["dtypes"], means, yerr=stds, capsize=4, color="tab:blue")
    ax.bar_label(bars, labels=[f"{m:.4f}" for m in means], padding=3)
    low = min(means) - max(0.02, 3 * max(stds or [0.0]))
    ax.set(ylim=(max(0.0, low), min(1.0, max(means) + 0.01)), ylabel="test accuracy")
    models = len(values[0])
    ax.set_title(f"DeepConvNet, same weights, {results['test_size']} test digits"
                 + (f" (mean ± std of {models} models)" if models > 1 else ""))  # fmt: skip
    return fig
