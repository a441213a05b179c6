"""The book's shopping examples give the book's numbers, through the hand-written rules."""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from funcbp.examples import (
    APPLE,
    APPLE_ORANGE,
    book_number,
    buy_apple,
    buy_apple_layers,
    buy_apple_orange,
    buy_apple_orange_layers,
    price_and_gradients,
)

EXPERIMENTS = Path(__file__).parent.parent / "experiments"


def test_buy_apple():
    price, grads = price_and_gradients(buy_apple, APPLE)
    assert price == pytest.approx(220)
    assert grads == pytest.approx({"apple": 2.2, "apple_num": 110, "tax": 200})


def test_buy_apple_orange():
    price, grads = price_and_gradients(buy_apple_orange, APPLE_ORANGE)
    assert price == pytest.approx(715)
    expected = {"apple": 2.2, "apple_num": 110, "orange": 3.3, "orange_num": 165, "tax": 650}
    assert grads == pytest.approx(expected)


def test_float64_matches_the_books_rounding():
    # NumPy prints 220.00000000000003 and 110.00000000000001; so must float64 here.
    price, grads = price_and_gradients(buy_apple, APPLE)
    assert price == 220.00000000000003
    assert grads["apple_num"] == 110.00000000000001


@pytest.mark.parametrize(
    ("script", "lines"),
    [
        ("buy_apple.py", ["price: 220", "dapple: 2.2", "dapple_num: 110", "dtax: 200"]),
        (
            "buy_apple_orange.py",
            [
                "price: 715",
                "dapple: 2.2",
                "dapple_num: 110",
                "dorange: 3.3",
                "dorange_num: 165",
                "dtax: 650",
            ],
        ),
    ],
)
def test_experiment_prints_the_books_numbers(script, lines, capsys):
    runpy.run_path(str(EXPERIMENTS / script), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == lines


# --- section 5.4: each layer's forward in order, then each backward in reverse --------


def test_buy_apple_layers_gives_the_books_numbers_in_the_books_order():
    forward, backward = buy_apple_layers(*(jnp.asarray(v, float) for v in APPLE.values()))
    assert list(forward) == ["apple_price", "price"]
    assert list(backward) == ["dprice", "dapple_price", "dtax", "dapple", "dapple_num"]
    assert float(forward["price"]) == 220.00000000000003
    assert {k: float(v) for k, v in backward.items()} == {
        "dprice": 1.0,
        "dapple_price": 1.1,
        "dtax": 200.0,
        "dapple": 2.2,
        "dapple_num": 110.00000000000001,
    }


def test_buy_apple_orange_layers_matches_jax_grad():
    args = [jnp.asarray(v, float) for v in APPLE_ORANGE.values()]
    forward, backward = buy_apple_orange_layers(*args)
    price, grads = price_and_gradients(buy_apple_orange, APPLE_ORANGE)
    assert float(forward["price"]) == price
    for name, g in grads.items():
        assert float(backward[f"d{name}"]) == g, name
    assert float(backward["dorange"]) == 3.3000000000000003


def test_the_layers_are_called_by_hand_not_through_autodiff(monkeypatch):
    # The 5.4 example must run each rule itself: with jax.vjp blocked it still works.
    def blocked(*args, **kwargs):
        raise AssertionError("autodiff was used")

    monkeypatch.setattr(jax, "vjp", blocked)
    monkeypatch.setattr(jax, "grad", blocked)
    _, backward = buy_apple_layers(*(jnp.asarray(v, float) for v in APPLE.values()))
    assert float(backward["dapple"]) == 2.2


@pytest.mark.parametrize(
    ("script", "book_lines"),
    [
        ("buy_apple_layers.py", ["price: 220", "dApple: 2.2", "dApple_num: 110", "dTax: 200"]),
        (
            "buy_apple_orange_layers.py",
            [
                "price: 715",
                "dApple: 2.2",
                "dApple_num: 110",
                "dOrange: 3.3000000000000003",
                "dOrange_num: 165",
                "dTax: 650",
            ],
        ),
    ],
)
def test_layer_experiments_print_the_books_lines(script, book_lines, capsys):
    runpy.run_path(str(EXPERIMENTS / script), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("forward:  apple_price = 200")
    assert lines[1].startswith("backward: dprice = 1")
    assert lines[2:] == book_lines


def test_book_number():
    assert [book_number(x) for x in (220.00000000000003, 200.0, 2.2, 1)] == [
        "220.00000000000003",
        "200",
        "2.2",
        "1",
    ]
