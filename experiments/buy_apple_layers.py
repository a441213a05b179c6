"""The book's section 5.4.1 (buy_apple.py): MulLayer's forward and backward, called by hand.

Each mul layer's fwd runs in order and returns what its bwd needs; then each
bwd runs in reverse, from dprice = 1. Prints every value in the order
computed, then the book's lines: price 220, dApple 2.2, dApple_num 110, dTax 200.
"""

import jax

jax.config.update("jax_enable_x64", True)  # the book's float64 numbers

import jax.numpy as jnp  # noqa: E402

from funcbp.examples import APPLE, book_number, buy_apple_layers  # noqa: E402


def main() -> None:
    forward, backward = buy_apple_layers(*(jnp.asarray(v, float) for v in APPLE.values()))
    print("forward:  " + ", ".join(f"{k} = {book_number(v)}" for k, v in forward.items()))
    print("backward: " + ", ".join(f"{k} = {book_number(v)}" for k, v in backward.items()))
    print("price:", int(forward["price"]))
    print("dApple:", book_number(backward["dapple"]))
    print("dApple_num:", int(backward["dapple_num"]))
    print("dTax:", book_number(backward["dtax"]))


if __name__ == "__main__":
    main()
