"""The book's shopping examples give the book's numbers, through the hand-written rules."""

import runpy
from pathlib import Path

import pytest

from funcbp.examples import APPLE, APPLE_ORANGE, buy_apple, buy_apple_orange, price_and_gradients

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
