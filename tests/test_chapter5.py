"""funcbp.chapter5: every figure's numbers, as its DOT source writes them on the arrows."""

import html
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp.chapter5 import DRAWABLE, FIGURES, write_chapter
from funcbp.chapter5.book import index_page
from funcbp.chapter5.figures import BUILDERS
from funcbp.chapter5.steps import apple_layers, backprop_calls, sweep_transcript
from funcbp.chapter5.text import LABELS, TEXT
from funcbp.cli import main
from funcbp.fonts import missing_glyphs
from funcbp.zoo import two_layer
from tests.dot_text import dot_edges, dot_nodes


@pytest.fixture(scope="module")
def dots():
    """name -> DOT text of every graph figure, in English."""
    return {name: build("en").to_dot() for name, build in BUILDERS.items()}


def edges(dot):
    return {edge: (value, grad) for edge, (value, grad, _) in dot_edges(dot).items()}


# --- the figures' numbers -----------------------------------------------------------


def test_sigmoid_step_by_step_at_x_1(dots):
    e = edges(dots["sigmoid"])
    # forward: x, × −1, exp, + 1, 1/x; backward from 1 down to dx = 0.196612
    assert e["1/x", "1/mul"] == ("1", "0.196612")
    assert e["1/mul", "1/exp"] == ("-1", "-0.196612")
    assert e["1/exp", "1/add"] == ("0.367879", "-0.534447")
    assert e["1/add", "1/div"] == ("1.36788", "-0.534447")
    assert e["1/div", "1/y"] == ("0.731059", "1")
    labels = {name: label for name, (label, _) in dot_nodes(dots["sigmoid"]).items()}
    assert [labels[f"1/{n}"] for n in ("mul", "exp", "add", "div")] == ["× −1", "exp", "+ 1", "1/x"]
    # The one Sigmoid node gets the same dx from its output alone: y(1 - y).
    assert e["2/x", "2/Sigmoid"] == ("1", "0.196612")
    assert dot_nodes(dots["sigmoid"])["2/Sigmoid"][1] == (
        "dx = dout · y(1 − y) = 1 × 0.731059 × 0.268941"
    )
    assert pytest.approx(0.196612, abs=1e-6) == 0.731059 * (1 - 0.731059)


def test_sigmoid_notes_hold_each_steps_local_derivative(dots):
    nodes = dot_nodes(dots["sigmoid"])
    assert nodes["1/div"][1] == "∂/∂x = −1/x² = −y² = -0.534447"
    assert nodes["1/exp"][1] == "∂/∂x = exp(x) = 0.367879"
    assert dot_edges(dots["sigmoid"])["1/mul", "1/exp"][2] == "= -0.534447 × 0.367879"


def test_relu_shows_the_mask(dots):
    e = edges(dots["relu"])
    assert e["x", "Relu"] == ("[[1, -0.5], [-2, 3]]", "[[1, 0], [0, 1]]")
    assert e["Relu", "y"] == ("[[1, 0], [0, 3]]", "[[1, 1], [1, 1]]")
    assert dot_nodes(dots["relu"])["Relu"][1] == "mask = (x <= 0) = [[False, True], [True, False]]"


def test_softmax_with_loss_gradient_is_y_minus_t_and_halved_at_n_2(dots):
    e = edges(dots["softmax-with-loss"])
    assert e["1/a", "1/exp"][1] == "[0.3, -0.8, 0.5]"
    assert e["1/mul1", "1/log"][0] == "[0.3, 0.2, 0.5]"  # y
    assert e["1/const", "1/mul2"] == ("[0, 1, 0]", None)  # t, a constant: no gradient
    value, grad = e["2/A", "2/SoftmaxWithLoss"]
    assert grad == "[[0.15, -0.4, 0.25],\n [0.05, 0.1, -0.15]]"
    assert e["2/T", "2/SoftmaxWithLoss"][1] is None  # the one-hot labels get none
    assert value.startswith("[[-1.20397, -1.60944, -0.693147],")


def test_softmax_and_cross_entropy_layers(dots):
    e = edges(dots["softmax-cross-entropy"])
    assert e["1/a", "1/Softmax"][1] == "[0.3, -0.8, 0.5]"  # the book's 1e-7 moves the 7th digit
    assert e["1/Softmax", "1/CrossEntropyError"] == ("[0.3, 0.2, 0.5]", "[0, -5, 0]")
    assert e["2/a", "2/SoftmaxWithLoss"][1] == "[0.3, -0.8, 0.5]"
    assert e["2/t", "2/SoftmaxWithLoss"][1] is None


def test_affine_shapes_at_the_books_sizes(dots):
    e = edges(dots["affine"])
    assert e["X", "dot_general"] == ("(2,) [1, 0.5]", "(2,) [2.2, 2.8]")
    assert e["W", "dot_general"][1] == "(2, 3) [[1, 2, 3], [0.5, 1, 1.5]]"
    assert e["B", "add"] == ("(3,) [0.1, 0.2, 0.3]", "(3,) [1, 2, 3]")
    assert e["add", "Y"] == ("(3,) [0.3, 0.7, 1.1]", "(3,) [1, 2, 3]")
    labels = {name: label for name, (label, _) in dot_nodes(dots["affine"]).items()}
    assert (labels["dot_general"], labels["add"]) == ("dot", "+")


def test_batch_affine_sums_the_bias_gradient_over_the_batch(dots):
    e = edges(dots["affine-batch"])
    assert e["1/B", "1/broadcast_in_dim"][1] == "(3,) [5, 7, 9]"  # the book's dB
    assert e["2/B", "2/Affine"][1] == "(3,) [5, 7, 9]"  # and the hand-written rule's
    assert e["1/X", "1/dot_general"][1] == e["2/X", "2/Affine"][1]
    assert e["1/W", "1/dot_general"][1] == e["2/W", "2/Affine"][1]


def test_chain_rule_add_and_mul_nodes(dots):
    e = dot_edges(dots["chain-rule"])
    assert e["x", "+"] == ("1", "6", "= ∂z/∂t · ∂t/∂x = 6 × 1")
    assert e["integer_pow", "z"][:2] == ("9", "1")
    assert dot_nodes(dots["chain-rule"])["integer_pow"] == ("**2", "∂z/∂t = 2t = 2 × 3")
    add = edges(dots["add-node"])
    assert (add["x", "+"], add["y", "+"], add["+", "z"]) == (
        ("10", "1.3"),
        ("5", "1.3"),
        ("15", "1.3"),
    )
    mul = edges(dots["mul-node"])
    assert (mul["x", "×"], mul["y", "×"], mul["×", "z"]) == (
        ("10", "6.5"),
        ("5", "13"),
        ("50", "1.3"),
    )


def test_the_shopping_figures(dots):
    forward = edges(dots["apple-forward"])
    assert forward["×2", "price"] == ("220", None)  # forward only
    assert edges(dots["apple"])["apple", "×1"] == ("100", "2.2")
    orange = edges(dots["apple-orange"])
    assert orange["orange", "×2"] == ("150", "3.3")
    assert orange["×3", "price"] == ("715", "1")
    local = edges(dots["local-computation"])
    assert (local["others", "+"], local["+", "×2"], local["×2", "price"]) == (
        ("4000", None),
        ("4200", None),
        ("4620", None),
    )
    assert dot_nodes(dots["local-computation"])["+"][1] == (
        "4000 + 200 = 4200: this node needs nothing else"
    )


def test_two_layer_figure_is_the_networks_layers(dots):
    e = edges(dots["two-layer"])
    assert {dst for (src, dst) in e if src in ("Affine1", "Relu1", "Affine2")} == {
        "Relu1",
        "Affine2",
        "SoftmaxWithLoss",
    }


# --- Korean -------------------------------------------------------------------------------


def test_korean_labels_and_their_glyphs():
    dot = BUILDERS["apple"]("ko").to_dot()
    labels = {label for label, _ in dot_nodes(dot).values()}
    assert {"사과", "사과 개수", "소비세", "지불 금액"} <= labels
    assert edges(dot)["apple", "×1"] == ("100", "2.2")  # the numbers stay
    # Every letter of the Korean figures and pages has a glyph in the PNG's fonts.
    text = "".join(
        str(v) for entry in TEXT["ko"].values() for value in entry.values() for v in [value]
    )
    assert missing_glyphs(text + "".join(LABELS["ko"].values())) == set()


# --- sections 5.4 and 5.7 ------------------------------------------------------------------


def test_apple_layers_transcript_shows_the_code_that_ran_and_its_values():
    text = apple_layers("en")
    assert "price, mul_tax_layer = mul.forward(apple_price, tax)" in text
    assert "dapple, dapple_num = mul.backward(mul_apple_layer, dapple_price)" in text
    assert "# price = 220.00000000000003" in text
    assert "# dapple_num = 110.00000000000001" in text


def test_backprop_sweep_calls_each_rule_in_the_books_order():
    rng = np.random.default_rng(0)
    params = two_layer.init(jax.random.key(0), dtype=jnp.float64)
    x = jnp.asarray(rng.uniform(size=(3, 784)))
    t = jnp.asarray(rng.integers(0, 10, size=3))
    calls, grads = backprop_calls(two_layer, params, x, t)
    assert [f"{c.layer}.{c.rule}" for c in calls] == [
        "Affine1.forward",
        "Relu1.forward",
        "Affine2.forward",
        "SoftmaxWithLoss.forward",
        "SoftmaxWithLoss.backward",
        "Affine2.backward",
        "Relu1.backward",
        "Affine1.backward",
    ]
    assert list(calls[-1].outputs) == ["dx", "dW1", "db1"]
    want = two_layer.backprop(params, x, t)
    for name in want:
        np.testing.assert_array_equal(grads[name], want[name])
    text = sweep_transcript(calls)
    assert re.search(
        r"Affine2\.backward +dout \(3, 10\) +-> dx \(3, 50\), dW2 \(50, 10\), db2", text
    )


def test_a_network_prints_as_the_books_ordered_dict():
    assert repr(two_layer).splitlines() == [
        "Network('two-layer', input (N, 784)):",
        "  Affine1          W1 (784, 50), b1 (50,)",
        "  Relu1",
        "  Affine2          W2 (50, 10), b2 (10,)",
        "  SoftmaxWithLoss",
    ]


# --- the index page and the command -------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_index_has_one_sentence_per_figure_naming_section_and_figure(lang):
    files = {name: f"{i:02d}-{name}" for i, name in enumerate(FIGURES, 1)}
    page = index_page(files, lang)
    for i, figure in enumerate(FIGURES.values(), 1):
        assert figure.sentence(lang) in page
        assert f"({i:02d}-{figure.name}.png)" in page
    assert "Affine1.forward" in page and "mul.backward(mul_tax_layer, dprice)" in page
    sigmoid = FIGURES["sigmoid"].sentence(lang)
    assert sigmoid.startswith(
        "Section 5.5.2, Figures 5-19 to 5-22: " if lang == "en" else "5.5.2절, 그림 5-19 ~ 5-22: "
    )
    assert (
        FIGURES["relu"]
        .sentence(lang)
        .startswith("Section 5.5.1, Figure 5-18: " if lang == "en" else "5.5.1절, 그림 5-18: ")
    )


def test_funcbp_graph_sigmoid_holds_the_values(tmp_path, capsys):
    assert main(["graph", "sigmoid", "--out", str(tmp_path / "s.svg")]) == 0
    svg = (tmp_path / "s.svg").read_text()
    texts = {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)}
    for number in ("-1", "0.367879", "1.36788", "0.731059", "← 0.196612", "← -0.534447"):
        assert number in texts, number
    assert capsys.readouterr().out == f"wrote {tmp_path / 's.svg'}\n"


def test_funcbp_graph_lang_and_max_elements(tmp_path):
    assert main(["graph", "relu", "--out", str(tmp_path / "r.dot"), "--max-elements", "3"]) == 0
    assert edges((tmp_path / "r.dot").read_text())["x", "Relu"][0] == "(2, 2) mean 0.38 ±1.8"
    assert main(["graph", "apple", "--lang", "ko", "--out", str(tmp_path / "a.dot")]) == 0
    assert "지불 금액" in (tmp_path / "a.dot").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["graph", "sigmoid-curve", "--out", "c.dot"], "is a plot: draw it to .svg or .png"),
        (["graph", "relu", "--max-elements", "-1"], "expected an integer >= 0"),
        (["graph", "relu", "--lang", "fr"], "invalid choice: 'fr'"),
        (["chapter", "6"], "invalid choice: 6"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors exit at once
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_every_drawable_name_is_a_chapter_figure_or_a_network(capsys):
    assert list(DRAWABLE)[: len(FIGURES)] == list(FIGURES)
    assert set(DRAWABLE) - set(FIGURES) == {"simple-convnet", "small-convnet"}
    with pytest.raises(SystemExit):
        main(["graph", "--help"])
    helped = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # wrapped at hyphens
    assert ", ".join(FIGURES) + ") or simple-convnet, small-convnet" in helped


@pytest.mark.slow
def test_funcbp_chapter_5_in_korean_writes_every_figure_as_svg_and_png(tmp_path, capsys):
    out = tmp_path / "ko"
    assert main(["chapter", "5", "--lang", "ko", "--out", str(out)]) == 0
    for i, name in enumerate(FIGURES, 1):
        assert (out / f"{i:02d}-{name}.svg").read_text().lstrip().startswith("<?xml")
        assert (out / f"{i:02d}-{name}.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "index.md").read_text()
    assert page.startswith("# 5장 오차역전파법")
    assert "사과 개수" in (out / "01-apple-forward.svg").read_text()
    assert capsys.readouterr().out.startswith(f"wrote {out / 'index.md'} and 15 figures")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_write_chapter_refuses_a_bad_language_before_writing(tmp_path):
    with pytest.raises(ValueError, match="lang must be one of en, ko, got 'fr'"):
        write_chapter(tmp_path / "x", "fr")
    assert not (tmp_path / "x").exists()


def test_the_guides_link_to_each_other_and_quote_the_figures_numbers(dots):
    docs = Path(__file__).parent.parent / "docs"
    english, korean = (docs / "chapter5.md").read_text(), (docs / "ko" / "chapter5.md").read_text()
    assert "(ko/chapter5.md)" in english and "(../chapter5.md)" in korean
    numbers = {v for value, grad in edges(dots["sigmoid"]).values() for v in (value, grad) if v}
    for guide in (english, korean):
        for number in ("0.367879", "1.36788", "0.731059", "0.196612", "-0.534447"):
            assert number in numbers and number.replace("-", "−") in guide, number
        assert "0.983056" in guide and "0.983056" in dots["softmax-with-loss"]
