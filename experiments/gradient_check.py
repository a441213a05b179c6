"""The book's gradient_check.py: backprop vs numerical gradient on 3 MNIST digits.

float64, 784-50-10, weight_init_std 0.01, the first 3 training samples. First
the book's lines, the mean |backprop - numerical| per parameter (``W1:2.2e-13``
in the book; the numbers follow the random init), for the explicit backprop
sweep; then the four ways funcbp computes the gradient side by side.
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from funcbp import two_layer  # noqa: E402
from funcbp.data import load_mnist  # noqa: E402
from funcbp.net import GRADIENT_METHODS  # noqa: E402

PAIRS = [
    ("backprop", "numerical"),
    ("manual", "numerical"),
    ("autodiff", "numerical"),
    ("manual", "backprop"),
    ("autodiff", "backprop"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    (x, t), _ = load_mnist(args.data, one_hot_label=True)
    x, t = jnp.asarray(x[:3], jnp.float64), jnp.asarray(t[:3], jnp.float64)
    params = two_layer.init(jax.random.key(args.seed), dtype=jnp.float64)
    gradient = jax.jit(two_layer.gradient, static_argnames="method")
    grads = {method: gradient(params, x, t, method=method) for method in GRADIENT_METHODS}

    def diff(name: str, a: str, b: str) -> float:
        return float(np.mean(np.abs(grads[a][name] - grads[b][name])))

    for name in params:  # the book's lines
        print(f"{name}:{diff(name, 'backprop', 'numerical'):.2g}")
    print()
    print("mean |a - b| per parameter, for the four gradients")
    print(f"{'':<4}" + "".join(f"{f'{a} - {b}':>21}" for a, b in PAIRS))
    for name in params:
        print(f"{name:<4}" + "".join(f"{diff(name, a, b):>21.2e}" for a, b in PAIRS))


if __name__ == "__main__":
    main()
