"""The book's ch06/overfit_dropout.py: dropout 0.2 against none.

MultiLayerNetExtend 6x100, 300 training examples, the Trainer's SGD 0.01, 301
epochs; see :mod:`funcbp.experiments._overfit`.
"""

from __future__ import annotations

from funcbp.experiments import _overfit

VALUES, EPOCHS = (0.0, 0.2), 301


def compute(settings, out, log, stop=None) -> dict:
    return _overfit.compute(
        settings, out, log, stop, option="dropout", values=VALUES, epochs=EPOCHS
    )


def claims(results):
    return [_overfit.claim(results, "dropout 0.2", "the book's figure only")]


def figure(results):
    return _overfit.figure(results, "MultiLayerNetExtend 6x100 on 300 digits")
