"""Evaluation, once: accuracy and loss in eval mode, for one model or K at a time.

:func:`correct` counts the right answers and :func:`accuracy` is
``Network.accuracy``; :class:`Evaluator` is what training, ``funcbp
evaluate`` and the run folders use: K models' accuracy and mean loss (the
network's eval-mode ``loss``, weight decay included) on a whole set, cut
into device-resident batches once (:func:`batched`), each batch one jitted
call, so that memory stays bounded and a stop request is seen between batches.

The networks are duck-typed (``predict``, ``loss``), so this module sits below
:mod:`funcbp.net`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = ["BATCH", "Evaluator", "Score", "Stopped", "accuracy", "batched", "correct", "labels"]

BATCH = 500  # rows per evaluation call: bounded memory for any set and any K


class Score(NamedTuple):
    """Accuracy and mean loss on one set: floats for one model, (K,) arrays for K."""

    acc: Any
    loss: Any


class Stopped(Exception):
    """An evaluation left unfinished because the run was asked to stop."""


def labels(t: ArrayLike) -> Array:
    """Class indices (N,), from indices or one-hot rows (N, C)."""
    t = jnp.asarray(t)
    return jnp.argmax(t, axis=1) if t.ndim == 2 else t


def correct(scores: ArrayLike, t: ArrayLike) -> Array:
    """(N,) bools: whether each row's highest score is its label."""
    predicted = jnp.argmax(scores, axis=-1)
    return predicted == labels(t).astype(predicted.dtype)


def accuracy(net, params, x: ArrayLike, t: ArrayLike, state=None, *, compute_dtype=None) -> Array:
    """The fraction of rows whose highest score (eval mode) is the label."""
    return jnp.mean(correct(net.predict(params, x, state, compute_dtype=compute_dtype), t))


def batched(x: ArrayLike, t: ArrayLike, batch: int = BATCH) -> list[tuple[Array, Array]]:
    """``(x, t)`` cut into batches of ``batch`` rows (the last one shorter), on the device."""
    if len(x) == 0:
        raise ValueError("x must hold at least one example to evaluate, got 0 rows")
    return [
        (jnp.asarray(x[i : i + batch]), jnp.asarray(t[i : i + batch]))
        for i in range(0, len(x), batch)
    ]


class Evaluator:
    """Accuracy and loss of K models on whole sets, one jitted call per batch of rows.

    Args:
        build: ``build(values) -> Network``, one model's network from its values
            (those that differ between models, e.g. weight decay's lambda).
        models: K; params, state and values then have a leading (K,) axis.
        compute_dtype: the networks' (None: the params' dtype).
    """

    def __init__(
        self, build: Callable[[Mapping[str, Any]], Any], models: int = 1, compute_dtype=None
    ):
        self.models = models
        dtype = {"compute_dtype": compute_dtype}

        def sums(params, state, values, xb, tb):
            net = build(values)
            hits = jnp.sum(correct(net.predict(params, xb, state, **dtype), tb))
            return hits, net.loss(params, xb, tb, state, **dtype) * xb.shape[0]

        if models > 1:
            sums = jax.vmap(sums, in_axes=(0, 0, 0, None, None))
        self._sums = jax.jit(sums)

    def __call__(
        self,
        params,
        state,
        values: Mapping[str, Any],
        batches: Sequence[tuple[Array, Array]],
        stop: Callable[[], bool] | None = None,
    ) -> Score:
        """The models' :class:`Score` on the rows of ``batches`` (see :func:`batched`).

        Raises:
            Stopped: ``stop()`` became true between two batches.
        """
        hits, loss, n = 0, 0.0, 0
        for xb, tb in batches:
            if stop is not None and stop():
                raise Stopped
            h, s = self._sums(params, state, values, xb, tb)
            hits, loss = hits + np.asarray(h, np.int64), loss + np.asarray(s, np.float64)
            n += len(xb)
        acc, loss = hits / n, loss / n
        if self.models == 1:
            return Score(float(acc), float(loss))
        return Score(np.asarray(acc, np.float64), np.asarray(loss, np.float64))

    def scores(
        self,
        params,
        state,
        values: Mapping[str, Any],
        sets: Mapping[str, Sequence[tuple[Array, Array]]],
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """``{"train_acc": ..., "train_loss": ..., "test_acc": ...}``: each named set's score."""
        scores = {}
        for name, batches in sets.items():
            score = self(params, state, values, batches, stop)
            scores[f"{name}_acc"], scores[f"{name}_loss"] = score.acc, score.loss
        return scores
