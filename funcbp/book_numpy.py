"""The book's NumPy layer classes (common/layers.py, two_layer_net.py), as the book writes them.

They are the tests' oracle (funcbp's layers must give the same numbers) and the
benchmark's baseline. They keep the book's habits on purpose: state cached on
``self``, params shared by reference, ``Relu.backward`` writing into ``dout``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["Affine", "Relu", "SoftmaxWithLoss", "TwoLayerNet", "cross_entropy_error", "softmax"]


class Affine:
    """The book's Affine: ``dx = dout @ W.T``, ``dW = x.T @ dout``, ``db = sum(dout, 0)``."""

    def __init__(self, W: np.ndarray, b: np.ndarray):
        self.W, self.b = W, b
        self.x = self.original_x_shape = self.dW = self.db = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class Relu:
    """The book's Relu: mask ``x <= 0``; backward zeroes dout in place, as the book does."""

    def __init__(self):
        self.mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout[self.mask] = 0
        return dout


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y: np.ndarray, t: np.ndarray) -> float:
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot labels become indices
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class SoftmaxWithLoss:
    """The book's SoftmaxWithLoss; ``backward`` returns ``(y - t) / N`` and ignores ``dout``."""

    def __init__(self):
        self.y = self.t = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t
        self.y = softmax(x)
        return cross_entropy_error(self.y, t)

    def backward(self, dout: float = 1) -> np.ndarray:
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:  # one-hot labels
            return (self.y - self.t) / batch_size
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class TwoLayerNet:
    """The book's TwoLayerNet: an OrderedDict of layers sharing ``params`` by reference."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.params = params
        self.layers = OrderedDict(
            Affine1=Affine(params["W1"], params["b1"]),
            Relu1=Relu(),
            Affine2=Affine(params["W2"], params["b2"]),
        )
        self.last_layer = SoftmaxWithLoss()

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        for layer in self.layers.values():
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        a1, a2 = self.layers["Affine1"], self.layers["Affine2"]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}
