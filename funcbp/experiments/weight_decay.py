"""The book's ch06/overfit_weight_decay.py: weight decay λ = 0.1 against none.

MultiLayerNet 6x100, 300 training examples, SGD 0.01, 201 epochs; see
:mod:`funcbp.experiments._overfit`.
"""

from __future__ import annotations

from funcbp.experiments import _overfit

VALUES, EPOCHS = (0.0, 0.1), 201


def compute(settings, out, log, stop=None) -> dict:
    return _overfit.compute(
        settings, out, log, stop, option="weight_decay", values=VALUES, epochs=EPOCHS
    )


def claims(results):
    return [_overfit.claim(results, "λ = 0.1", "book: train 0.927, test 0.721 at the end")]


def figure(results):
    return _overfit.figure(results, "MultiLayerNet 6x100 on 300 digits")
