"""The book's gradient_check.py: backprop vs numerical gradient on 3 MNIST digits.

float64, 784-50-10, weight_init_std 0.01, the first 3 training samples. Prints
the mean |backprop - numerical| per parameter; the book's NumPy code prints
about 2e-13 (W1), 1e-12 (b1), 8e-13 (W2) and 1e-10 (b2).
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from funcbp import two_layer  # noqa: E402
from funcbp.data import load_mnist  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    (x, t), _ = load_mnist(args.data, one_hot_label=True)
    x, t = jnp.asarray(x[:3], jnp.float64), jnp.asarray(t[:3], jnp.float64)
    params = two_layer.init(jax.random.key(args.seed), dtype=jnp.float64)

    grads = {
        method: jax.jit(two_layer.gradient, static_argnames="method")(params, x, t, method=method)
        for method in ("numerical", "backprop", "manual", "autodiff")
    }
    print(f"{'param':<6} {'backprop':>10} {'manual':>10} {'autodiff':>10}   mean |g - numerical|")
    for name in ("W1", "b1", "W2", "b2"):
        diffs = [
            float(np.mean(np.abs(grads[m][name] - grads["numerical"][name])))
            for m in ("backprop", "manual", "autodiff")
        ]
        print(f"{name:<6} " + " ".join(f"{d:>10.2e}" for d in diffs))


if __name__ == "__main__":
    main()
