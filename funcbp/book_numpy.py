"""The book's NumPy layers, networks, optimizers and Trainer (common/, ch05 to ch08).

They are the tests' oracle (funcbp's layers must give the same numbers) and the
baseline of the benchmark and the experiments' speed comparisons. They keep the
book's habits on purpose: state cached on ``self``, params shared by reference
and updated in place, ``Relu.backward`` writing into ``dout``, one Python loop
iteration per step. Nothing here is made faster than the book's code.

For a timing of the book's own training, e.g. one trial of its random search::

    params = multi_layer_params(784, [100] * 6, 10, rng=np.random.default_rng(0))
    net = MultiLayerNet(params, hidden_layers=6, weight_decay_lambda=1e-6)
    trainer = Trainer(net, x_train, t_train, x_val, t_val, epochs=50,
                      optimizer="sgd", optimizer_param={"lr": 0.005}, verbose=False,
                      rng=np.random.default_rng(0))
    trainer.train()  # trainer.train_acc_list, trainer.test_acc_list
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "BatchNormalization",
    "Convolution",
    "DeepConvNet",
    "Dropout",
    "Momentum",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Nesterov",
    "Pooling",
    "RMSprop",
    "Relu",
    "Sigmoid",
    "SimpleConvNet",
    "SoftmaxWithLoss",
    "Trainer",
    "TwoLayerNet",
    "batch_norm_train",
    "col2im",
    "cross_entropy_error",
    "im2col",
    "multi_layer_params",
    "shuffle_dataset",
    "smooth_curve",
    "softmax",
]


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


# --- chapters 6 to 8 (common/util.py, common/layers.py) ---


def im2col(
    input_data: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """(N, C, H, W) -> (N*OH*OW, C*FH*FW), filled window position by window position."""
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1

    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))

    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]

    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(
    col: np.ndarray,
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> np.ndarray:
    """The transpose of im2col: ``+=`` each window position back, then crop the padding."""
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]

    return img[:, :, pad : H + pad, pad : W + pad]


class Convolution:
    """The book's Convolution: im2col, one matmul, and col2im in backward."""

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0):
        self.W, self.b = W, b
        self.stride, self.pad = stride, pad
        self.x = self.col = self.col_W = None
        self.dW = self.db = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape
        N, C, H, W = x.shape  # noqa: RUF059 (the book's line)
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)

        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T

        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)

        self.x = x
        self.col = col
        self.col_W = col_W
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)

        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)

        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    """The book's max Pooling. Its out_h leaves out the pad, so any pad > 0 fails in forward."""

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0):
        self.pool_h, self.pool_w = pool_h, pool_w
        self.stride, self.pad = stride, pad
        self.x = self.arg_max = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        N, C, H, W = x.shape
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)

        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)

        arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

        self.x = x
        self.arg_max = arg_max
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = dout.transpose(0, 2, 3, 1)

        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape((*dout.shape, pool_size))

        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class BatchNormalization:
    """The book's BatchNormalization, per feature of x flattened to (N, D).

    Its backward reads the caches of the last train-mode forward, so after an
    eval-mode forward it returns the train-mode gradient of another batch.
    """

    def __init__(
        self,
        gamma: np.ndarray,
        beta: np.ndarray,
        momentum: float = 0.9,
        running_mean: np.ndarray | None = None,
        running_var: np.ndarray | None = None,
    ):
        self.gamma, self.beta = gamma, beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.xn = self.std = None
        self.dgamma = self.dbeta = None

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        self.input_shape = x.shape
        if x.ndim != 2:
            N, C, H, W = x.shape  # noqa: RUF059 (the book's line)
            x = x.reshape(N, -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x: np.ndarray, train_flg: bool) -> np.ndarray:
        if self.running_mean is None:
            N, D = x.shape  # noqa: RUF059 (the book's line)
            self.running_mean = np.zeros(D)
            self.running_var = np.zeros(D)

        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std

            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / (np.sqrt(self.running_var + 10e-7))

        return self.gamma * xn + self.beta

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if dout.ndim != 2:
            N, C, H, W = dout.shape  # noqa: RUF059 (the book's line)
            dout = dout.reshape(N, -1)
        dx = self.__backward(dout)
        return dx.reshape(*self.input_shape)

    def __backward(self, dout: np.ndarray) -> np.ndarray:
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size

        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx


class Dropout:
    """The book's Dropout: ``x * mask`` in training, ``x * (1 - ratio)`` at test time.

    The book draws the mask with ``np.random.rand``; ``forward(x, mask=...)``
    takes a given one instead, so a test can hand it the mask funcbp drew.
    """

    def __init__(self, dropout_ratio: float = 0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(
        self, x: np.ndarray, train_flg: bool = True, mask: np.ndarray | None = None
    ) -> np.ndarray:
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio if mask is None else mask
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


# --- the book's networks of chapters 6 to 8 ---


class Sigmoid:
    """The book's Sigmoid: backward ``dout * (1 - out) * out``."""

    def __init__(self):
        self.out = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1.0 - self.out) * self.out


def _forward(layers, x, train_flg, masks):
    """The book's predict loop; ``masks`` (one per Dropout, in order) replace np.random."""
    masks = iter(masks or ())
    for layer in layers:
        if isinstance(layer, Dropout):
            x = layer.forward(x, train_flg, next(masks, None))
        elif isinstance(layer, BatchNormalization):
            x = layer.forward(x, train_flg)
        else:
            x = layer.forward(x)
    return x


def _backward(layers, last_layer):
    dout = last_layer.backward(1)
    for layer in reversed(layers):
        dout = layer.backward(dout)


class SimpleConvNet:
    """The book's SimpleConvNet (ch07/simple_convnet.py), on a params dict in its names."""

    def __init__(self, params: dict[str, np.ndarray], stride: int = 1, pad: int = 0):
        self.params = params
        self.layers = OrderedDict(
            Conv1=Convolution(params["W1"], params["b1"], stride, pad),
            Relu1=Relu(),
            Pool1=Pooling(pool_h=2, pool_w=2, stride=2),
            Affine1=Affine(params["W2"], params["b2"]),
            Relu2=Relu(),
            Affine2=Affine(params["W3"], params["b3"]),
        )
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _forward(self.layers.values(), x, False, None)

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self.last_layer.forward(self.predict(x), t)

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        self.loss(x, t)
        _backward(list(self.layers.values()), self.last_layer)
        grads = {}
        for i, name in enumerate(("Conv1", "Affine1", "Affine2"), 1):
            grads[f"W{i}"], grads[f"b{i}"] = self.layers[name].dW, self.layers[name].db
        return grads


class DeepConvNet:
    """The book's DeepConvNet (ch08/deep_convnet.py): a list of layers, two of them Dropout."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.params = params
        p = params
        self.layers = []
        for i, pad in zip(range(1, 7), (1, 1, 1, 2, 1, 1), strict=True):
            self.layers += [Convolution(p[f"W{i}"], p[f"b{i}"], 1, pad), Relu()]
            if i % 2 == 0:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers += [Affine(p["W7"], p["b7"]), Relu(), Dropout(0.5)]
        self.layers += [Affine(p["W8"], p["b8"]), Dropout(0.5)]
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x: np.ndarray, train_flg: bool = False, masks=None) -> np.ndarray:
        return _forward(self.layers, x, train_flg, masks)

    def loss(self, x: np.ndarray, t: np.ndarray, masks=None) -> float:
        return self.last_layer.forward(self.predict(x, train_flg=True, masks=masks), t)

    def gradient(self, x: np.ndarray, t: np.ndarray, masks=None) -> dict[str, np.ndarray]:
        self.loss(x, t, masks)
        _backward(self.layers, self.last_layer)
        grads = {}
        for i, layer_idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18), 1):
            grads[f"W{i}"] = self.layers[layer_idx].dW
            grads[f"b{i}"] = self.layers[layer_idx].db
        return grads


class MultiLayerNetExtend:
    """The book's MultiLayerNetExtend (common/multi_layer_net_extend.py), on a params dict.

    ``running`` holds each BatchNorm{i}'s running_mean and running_var, which
    the book keeps on the layers rather than in params.
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        hidden_layers: int,
        activation: str = "relu",
        weight_decay_lambda: float = 0.0,
        use_dropout: bool = False,
        dropout_ration: float = 0.5,
        use_batchnorm: bool = False,
        running: dict[str, np.ndarray] | None = None,
    ):
        self.params, self.hidden_layer_num = params, hidden_layers
        self.weight_decay_lambda, self.use_batchnorm = weight_decay_lambda, use_batchnorm
        running = running or {}
        activation_layer = {"sigmoid": Sigmoid, "relu": Relu}
        self.layers = OrderedDict()
        for idx in range(1, hidden_layers + 1):
            self.layers[f"Affine{idx}"] = Affine(params[f"W{idx}"], params[f"b{idx}"])
            if use_batchnorm:
                self.layers[f"BatchNorm{idx}"] = BatchNormalization(
                    params[f"gamma{idx}"],
                    params[f"beta{idx}"],
                    running_mean=running.get(f"running_mean{idx}"),
                    running_var=running.get(f"running_var{idx}"),
                )
            self.layers[f"Activation_function{idx}"] = activation_layer[activation]()
            if use_dropout:
                self.layers[f"Dropout{idx}"] = Dropout(dropout_ration)
        idx = hidden_layers + 1
        self.layers[f"Affine{idx}"] = Affine(params[f"W{idx}"], params[f"b{idx}"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x: np.ndarray, train_flg: bool = False, masks=None) -> np.ndarray:
        return _forward(self.layers.values(), x, train_flg, masks)

    def loss(self, x: np.ndarray, t: np.ndarray, train_flg: bool = False, masks=None) -> float:
        y = self.predict(x, train_flg, masks)
        weight_decay = 0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params[f"W{idx}"]
            weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)
        return self.last_layer.forward(y, t) + weight_decay

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        """The share of rows whose highest score (eval mode) is the label."""
        y = np.argmax(self.predict(x, train_flg=False), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def gradient(self, x: np.ndarray, t: np.ndarray, masks=None) -> dict[str, np.ndarray]:
        self.loss(x, t, train_flg=True, masks=masks)
        _backward(list(self.layers.values()), self.last_layer)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            affine = self.layers[f"Affine{idx}"]
            grads[f"W{idx}"] = affine.dW + self.weight_decay_lambda * self.params[f"W{idx}"]
            grads[f"b{idx}"] = affine.db
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads[f"gamma{idx}"] = self.layers[f"BatchNorm{idx}"].dgamma
                grads[f"beta{idx}"] = self.layers[f"BatchNorm{idx}"].dbeta
        return grads


class MultiLayerNet(MultiLayerNetExtend):
    """The book's MultiLayerNet (common/multi_layer_net.py): MultiLayerNetExtend's layers
    without batch norm or dropout, and the same weight-decay gradient ``dW + lambda * W``."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        hidden_layers: int,
        activation: str = "relu",
        weight_decay_lambda: float = 0.0,
    ):
        super().__init__(params, hidden_layers, activation, weight_decay_lambda)


def multi_layer_params(
    input_size: int,
    hidden_size_list: list[int],
    output_size: int,
    weight_init_std: float | str = "relu",
    use_batchnorm: bool = False,
    rng=None,
) -> dict[str, np.ndarray]:
    """The book's ``__init_weight``: ``scale * randn`` weights, zero biases; ones and zeros
    for gamma and beta with ``use_batchnorm``.

    ``weight_init_std`` is a number, ``"relu"``/``"he"`` (sqrt(2 / fan_in)) or
    ``"sigmoid"``/``"xavier"`` (sqrt(1 / fan_in)). ``rng`` is a
    ``np.random.Generator``; None draws from ``np.random``, as the book does.
    """
    rng = np.random if rng is None else rng
    randn = rng.randn if rng is np.random else lambda *shape: rng.standard_normal(shape)
    sizes = [input_size, *hidden_size_list, output_size]
    params = {}
    for idx in range(1, len(sizes)):
        scale = weight_init_std
        if str(weight_init_std).lower() in ("relu", "he"):
            scale = np.sqrt(2.0 / sizes[idx - 1])
        elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
            scale = np.sqrt(1.0 / sizes[idx - 1])
        params[f"W{idx}"] = scale * randn(sizes[idx - 1], sizes[idx])
        params[f"b{idx}"] = np.zeros(sizes[idx])
    if use_batchnorm:
        for idx, size in enumerate(hidden_size_list, 1):
            params[f"gamma{idx}"] = np.ones(size)
            params[f"beta{idx}"] = np.zeros(size)
    return params


# --- chapter 6: the optimizers (common/optimizer.py) ---
# Each updates ``params`` in place, so the layers holding the same arrays see the change.


class SGD:
    """The book's SGD: ``W -= lr * dW``."""

    def __init__(self, lr: float = 0.01):
        self.lr = lr

    def update(self, params: dict, grads: dict) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]


class Momentum:
    """The book's Momentum: ``v = momentum * v - lr * dW``, then ``W += v``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum
        self.v = None

    def update(self, params: dict, grads: dict) -> None:
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class Nesterov:
    """Nesterov's accelerated gradient as the Japanese repository writes it: the step
    uses the old v, then v is updated (the Korean one updates v first)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum
        self.v = None

    def update(self, params: dict, grads: dict) -> None:
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class AdaGrad:
    """The book's AdaGrad: ``h += dW * dW``, ``W -= lr * dW / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01):
        self.lr = lr
        self.h = None

    def update(self, params: dict, grads: dict) -> None:
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class RMSprop:
    """The book's RMSprop: h decays by ``decay_rate``; the step as AdaGrad's."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99):
        self.lr, self.decay_rate = lr, decay_rate
        self.h = None

    def update(self, params: dict, grads: dict) -> None:
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class Adam:
    """The book's Adam: bias correction folded into the rate, eps 1e-7 outside the root."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = self.v = None

    def update(self, params: dict, grads: dict) -> None:
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


# The Trainer's optimizer_class_dict.
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


# --- chapter 6: the Trainer and the helpers of common/util.py ---


class Trainer:
    """The book's Trainer (common/trainer.py): one minibatch per ``train_step``.

    Each step draws ``choice(train_size, batch_size)`` (with replacement),
    updates, then computes the loss once more on the same batch (the book's
    ``train_loss_list``). Train and test accuracy are taken whenever
    ``current_iter % iter_per_epoch == 0``, after that step's update, on the
    first ``evaluate_sample_num_per_epoch`` examples (all when None). ``rng``
    is a ``np.random.Generator`` for the draws; None uses ``np.random``, as the
    book does.
    """

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20,
                 mini_batch_size=100, optimizer="SGD", optimizer_param=None,
                 evaluate_sample_num_per_epoch=None, verbose=True, rng=None):  # fmt: skip
        self.network, self.verbose = network, verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.epochs, self.batch_size = epochs, mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        optimizer_param = {"lr": 0.01} if optimizer_param is None else optimizer_param
        self.optimizer = OPTIMIZERS[optimizer.lower()](**optimizer_param)
        self.rng = np.random if rng is None else rng
        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = self.current_epoch = 0
        self.train_loss_list, self.train_acc_list, self.test_acc_list = [], [], []

    def train_step(self) -> None:
        batch_mask = self.rng.choice(self.train_size, self.batch_size)
        x_batch, t_batch = self.x_train[batch_mask], self.t_train[batch_mask]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print(f"train loss:{loss}")
        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            x_train, t_train, x_test, t_test = self.x_train, self.t_train, self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                n = self.evaluate_sample_num_per_epoch
                x_train, t_train, x_test, t_test = x_train[:n], t_train[:n], x_test[:n], t_test[:n]
            train_acc = self.network.accuracy(x_train, t_train)
            test_acc = self.network.accuracy(x_test, t_test)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                epoch = self.current_epoch
                print(f"=== epoch:{epoch}, train acc:{train_acc}, test acc:{test_acc} ===")
        self.current_iter += 1

    def train(self) -> None:
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{test_acc}")


def smooth_curve(x) -> np.ndarray:
    """The book's smoothing of a loss curve: an 11-point Kaiser window (beta 2), edges mirrored.

    The output has the input's length.
    """
    window_len = 11
    x = np.asarray(x)
    s = np.r_[x[window_len - 1 : 0 : -1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


def shuffle_dataset(x: np.ndarray, t: np.ndarray, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """The book's ``shuffle_dataset``: x and t in one random permutation of the rows.

    ``rng`` is a ``np.random.Generator``; None uses ``np.random``, as the book does.
    """
    rng = np.random if rng is None else rng
    permutation = rng.permutation(x.shape[0])
    return x[permutation], t[permutation]


def batch_norm_train(weight_init_std, x_train, t_train, max_epochs=20, rng=None):
    """ch06/batch_norm_test.py's ``__train``: MultiLayerNetExtend 5x100 with and without
    batch norm, SGD 0.01, batch 100, one minibatch draw for both; each net's training
    accuracy once an epoch. Returns ``(train_acc_list, bn_train_acc_list)``."""
    rng = np.random if rng is None else rng
    hidden = [100, 100, 100, 100, 100]
    bn_params = multi_layer_params(784, hidden, 10, weight_init_std, use_batchnorm=True, rng=rng)
    params = multi_layer_params(784, hidden, 10, weight_init_std, rng=rng)
    bn_network = MultiLayerNetExtend(bn_params, len(hidden), use_batchnorm=True)
    network = MultiLayerNetExtend(params, len(hidden))
    optimizer = SGD(lr=0.01)
    train_size, batch_size = x_train.shape[0], 100
    iter_per_epoch = max(train_size / batch_size, 1)
    train_acc_list, bn_train_acc_list, epoch_cnt = [], [], 0
    for i in range(1000000000):
        batch_mask = rng.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        for _network in (bn_network, network):
            grads = _network.gradient(x_batch, t_batch)
            optimizer.update(_network.params, grads)
        if i % iter_per_epoch == 0:
            train_acc_list.append(network.accuracy(x_train, t_train))
            bn_train_acc_list.append(bn_network.accuracy(x_train, t_train))
            epoch_cnt += 1
            if epoch_cnt >= max_epochs:
                break
    return train_acc_list, bn_train_acc_list
