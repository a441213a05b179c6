"""K models' results, summarized once: per model, per configuration, ranked, and as lines.

Training writes these into ``metrics.json`` and ``sweep.json``; ``funcbp
evaluate`` and ``funcbp train`` print them with :func:`lines`. A
configuration is a set of values (a grid point or a trial) and its seeds; a
sweep ranks configurations by their mean validation accuracy, never by test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["by_configuration", "final", "label", "lines", "per_model", "ranking", "stats"]

METRICS = ("train_acc", "train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "loss")


def stats(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std across models (std 0 for one model)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def per_model(models: Sequence[Mapping[str, Any]], results: Mapping[str, Any]) -> list[dict]:
    """One dict per model: its values (seed, lr, ...) and its results.

    ``results`` maps a metric (``train_acc``, ...) to a float for one model
    or a sequence of K.
    """
    k = len(models)
    columns = {n: np.broadcast_to(np.asarray(v, np.float64), (k,)) for n, v in results.items()}
    return [
        {**values, **{n: float(col[j]) for n, col in columns.items()}}
        for j, values in enumerate(models)
    ]


def final(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's final numbers: one model's own, or mean ± std over K."""
    names = [n for n in METRICS if n in rows[0]]
    if len(rows) == 1:
        return {n: rows[0][n] for n in names}
    return {n: stats([r[n] for r in rows]) for n in names}


def by_configuration(rows: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> list[dict]:
    """The models grouped by their values other than the seed; each group's mean ± std."""
    keys = [n for n in varying if n != "seed"]
    groups: dict[tuple, list[int]] = {}
    for j, row in enumerate(rows):
        groups.setdefault(tuple(repr(row[n]) for n in keys), []).append(j)
    configurations = []
    for members in groups.values():
        first = rows[members[0]]
        names = [n for n in METRICS if n in first]
        summary = {n: stats([rows[j][n] for j in members]) for n in names}
        configurations.append({"values": {n: first[n] for n in keys}, "models": members, **summary})
    return configurations


def ranking(configurations: Sequence[Mapping[str, Any]], by: str = "val_acc") -> list[int] | None:
    """Configurations best first by mean ``by``; None when there is no such number."""
    if not configurations or by not in configurations[0]:
        return None
    return sorted(range(len(configurations)), key=lambda c: -configurations[c][by]["mean"])


def label(row: Mapping[str, Any], varying: Sequence[str]) -> str:
    """``seed 2, lr 0.01``: what tells this model from the others."""
    names = [n for n in varying if n != "seed"]
    parts = [f"seed {row['seed']}"] + [f"{n} {_number(row[n])}" for n in names]
    return ", ".join(parts)


def lines(rows: Sequence[Mapping[str, Any]], varying: Sequence[str], where: str) -> list[str]:
    """What ``funcbp evaluate`` and ``train`` print: a line per model when K > 1, then the run."""
    sets = [s for s in ("train", "val", "test") if f"{s}_acc" in rows[0]]
    out = []
    if len(rows) > 1:
        for row in rows:
            accs = ", ".join(f"{s} acc {row[f'{s}_acc']:.4f}" for s in sets)
            out.append(f"{label(row, varying)}: {accs}")
    summary = final(rows)
    if len(rows) == 1:
        accs = ", ".join(f"{s} acc {summary[f'{s}_acc']:.4f}" for s in sets)
    else:
        accs = ", ".join(
            f"{s} acc {summary[f'{s}_acc']['mean']:.4f} ± {summary[f'{s}_acc']['std']:.4f}"
            for s in sets
        )
        accs = f"{len(rows)} models: {accs}"
    out.append(f"{where}: {accs}" if where else accs)
    return out


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
