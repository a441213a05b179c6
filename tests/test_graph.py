"""funcbp.graph: the chapter's figures, with values and gradients from the hand-written rules."""

import re
import runpy
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp.cli import main
from funcbp.conv import convolution, pooling
from funcbp.graph import EXAMPLES, Graph, draw, format_value, trace
from funcbp.layers import add, affine, mul, relu, softmax_with_loss
from funcbp.norm import batch_norm, dropout
from funcbp.zoo import two_layer
from tests.dot_text import dot_edges, dot_nodes

EXPERIMENTS = Path(__file__).parent.parent / "experiments"
TIMES = "\u00d7"


def values_and_grads(dot: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(src, dst) -> (value above the arrow, red gradient below it), read from the DOT text."""
    return {edge: (value, grad) for edge, (value, grad, _) in dot_edges(dot).items()}


def edge_path(graph, start: str) -> list[str]:
    """Node names met following the arrows out of ``start`` (one way out per node)."""
    names = [start]
    while outs := [e.dst for e in graph.edges if e.src == names[-1]]:
        assert len(set(outs)) == 1, (names[-1], outs)
        names.append(outs[0])
    return names


def input_grads(graph, names):
    """An input's gradient: the sum of what its arrows carry back."""
    return [sum(e.grad for e in graph.edges if e.src == name) for name in names]


def loss(params, x, t):
    # The book's TwoLayerNet, each layer in the scope funcbp's net module gives it.
    with jax.named_scope("Affine1"):
        h = affine(x, params["W1"], params["b1"])
    with jax.named_scope("Relu1"):
        h = relu(h)
    with jax.named_scope("Affine2"):
        scores = affine(h, params["W2"], params["b2"])
    with jax.named_scope("SoftmaxWithLoss"):
        return softmax_with_loss(scores, t)


@pytest.fixture(scope="module")
def net_args():
    # The CLI example's params and batch: one set of shapes keeps JAX's compiling to once.
    return EXAMPLES["two-layer"]()[1]


# --- the book's figures -------------------------------------------------------


def test_apple_figure_values_above_and_gradients_below_each_arrow():
    f, args, argnames = EXAMPLES["apple"]()
    dot = trace(f, *args, argnames=argnames).to_dot()
    assert "rankdir=LR" in dot
    # Forward left to right: 100 and 2 into the first x, 200 and 1.1 into the second, 220 out;
    # backward right to left: 1, then 1.1 and 200, then 2.2 and 110.
    assert values_and_grads(dot) == {
        ("apple", f"{TIMES}1"): ("100", "2.2"),
        ("apple_num", f"{TIMES}1"): ("2", "110"),
        (f"{TIMES}1", f"{TIMES}2"): ("200", "1.1"),
        ("tax", f"{TIMES}2"): ("1.1", "200"),
        (f"{TIMES}2", "price"): ("220", "1"),
    }
    assert dot.count(f'label="{TIMES}", shape=circle') == 2


def test_apple_orange_figure():
    f, args, argnames = EXAMPLES["apple-orange"]()
    graph = trace(f, *args, argnames=argnames)
    edges = values_and_grads(graph.to_dot())
    expected = {"apple": "2.2", "apple_num": "110", "orange": "3.3", "orange_num": "165"}
    for name, grad in expected.items():
        ((_, got),) = [v for (src, _), v in edges.items() if src == name]
        assert got == grad, name
    assert edges["tax", f"{TIMES}3"] == ("1.1", "650")
    assert edges["+", f"{TIMES}3"] == ("650", "1.1")
    assert edges[f"{TIMES}3", "price"] == ("715", "1")


def test_two_layer_nodes_follow_the_book_from_input_to_loss(net_args):
    graph = trace(loss, *net_args)
    assert edge_path(graph, "x") == ["x", "Affine1", "Relu1", "Affine2", "SoftmaxWithLoss", "loss"]
    assert {n.name for n in graph.nodes if n.kind == "input"} == {"W1", "b1", "W2", "b2", "x", "t"}
    # Integer labels carry no gradient; arrays are summarized, not dumped.
    (t_edge,) = [e for e in graph.edges if e.src == "t"]
    assert t_edge.grad is None
    assert dot_edges(graph.to_dot())["x", "Affine1"][0].startswith("(4, 784) mean ")
    assert dot_edges(graph.to_dot())["t", "SoftmaxWithLoss"][1:] == (None, None)


def test_jitted_function_is_opened_up_to_its_layers(net_args):
    graph = trace(jax.jit(loss), *net_args)
    assert [n.name for n in graph.nodes if n.kind == "layer"] == [
        "Affine1",
        "Relu1",
        "Affine2",
        "SoftmaxWithLoss",
    ]


def test_unscoped_layers_are_numbered_camel_case():
    def net(x, W, b):
        return jnp.sum(affine(affine(x, W, b), W, b))

    graph = trace(net, jnp.ones((2, 3)), jnp.ones((3, 3)), jnp.ones(3))
    assert edge_path(graph, "x") == ["x", "Affine1", "Affine2", "reduce_sum", "net"]


def test_funcbp_two_layer_example():
    f, args, argnames = EXAMPLES["two-layer"]()
    assert f == two_layer.loss  # the real network, not a stand-in
    graph = trace(f, *args, argnames=argnames)
    assert edge_path(graph, "x") == ["x", "Affine1", "Relu1", "Affine2", "SoftmaxWithLoss", "loss"]
    assert sorted(argnames) == ["W1", "W2", "b1", "b2", "t", "x"]


@pytest.mark.slow
def test_funcbp_graph_simple_convnet_draws_the_books_layers(tmp_path, capsys):
    f, args, argnames = EXAMPLES["simple-convnet"]()
    graph = trace(f, *args, argnames=argnames)
    path = ["x", "Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2", "SoftmaxWithLoss"]
    assert edge_path(graph, "x") == [*path, "loss"]
    assert [n.name for n in graph.nodes if n.kind == "op"] == []  # the book's layers only
    assert main(["graph", "simple-convnet", "--out", str(tmp_path / "sc.dot")]) == 0
    assert '"Conv1" -> "Relu1"' in (tmp_path / "sc.dot").read_text()


def test_small_convnet_has_one_node_per_layer_call_with_static_args_and_tuple_outputs():
    f, args, argnames = EXAMPLES["small-convnet"]()
    graph = trace(f, *args, argnames=argnames)
    assert edge_path(graph, "x") == [
        "x",
        "Conv1",
        "Relu1",
        "Pool1",
        "BatchNorm1",
        "Affine1",
        "SoftmaxWithLoss",
        "small_convnet_loss",
    ]
    # Strides, flags and batch norm's unused running statistics make no nodes of their own.
    assert [n.kind for n in graph.nodes].count("op") == 0
    want = jax.jit(jax.grad(f))(*args)
    for name in ("W1", "b1", "gamma1", "beta1", "W2", "b2"):
        np.testing.assert_allclose(
            input_grads(graph, [name])[0], want[name], rtol=1e-10, atol=1e-13
        )


def test_unscoped_later_layers_are_named_after_their_functions():
    (params, x, _), stats = EXAMPLES["small-convnet"]()[1], (np.zeros(12), np.ones(12))

    def net(x, key):
        h = pooling(convolution(x, params["W1"], params["b1"]))
        h, _ = batch_norm(h, params["gamma1"], params["beta1"], *stats)
        return jnp.sum(dropout(h, key, 0.5, False))

    graph = trace(net, x, None)
    assert edge_path(graph, "x") == [
        "x",
        "Convolution",
        "Pooling",
        "BatchNorm",
        "Dropout",
        "reduce_sum",
        "net",
    ]


# --- the gradients are computed, through the hand-written rules -----------------


def test_edge_gradients_equal_jax_grad(net_args):
    f, args, argnames = EXAMPLES["apple-orange"]()
    graph = trace(f, *args, argnames=argnames)
    want = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    np.testing.assert_allclose(input_grads(graph, argnames), want, rtol=1e-12)

    graph = trace(loss, *net_args)
    want = jax.grad(loss)(*net_args)
    for name in ("W1", "b1", "W2", "b2"):  # float32, summed in another order: relative to the scale
        scale = float(np.max(np.abs(want[name])))
        np.testing.assert_allclose(
            input_grads(graph, [name])[0], want[name], rtol=1e-5, atol=1e-6 * scale
        )


def test_gradients_come_from_the_custom_vjp_rule():
    # A rule that lies (backward 3, forward identity) shows up on the arrows.
    @jax.custom_vjp
    def triple_back(x):
        return x

    triple_back.defvjp(lambda x: (x, None), lambda _, dout: (3 * dout,))

    graph = trace(lambda x: mul(triple_back(x), x), jnp.float64(2.0))
    assert [n.label for n in graph.nodes if n.kind == "layer"] == ["TripleBack", TIMES]
    (into_layer,) = [e for e in graph.edges if e.dst == "TripleBack"]
    assert into_layer.grad == 3 * 2.0  # 3 * d(y * x)/dy, not the true 2


def test_a_value_used_twice_splits_its_gradient_over_its_arrows():
    graph = trace(lambda x: mul(x, x), jnp.float64(3.0))
    grads = [float(e.grad) for e in graph.edges if e.src == "x"]
    assert grads == [3.0, 3.0]  # each arrow its share; together d(x^2)/dx = 6


def test_plain_primitives_between_layers_get_small_nodes():
    def scaled(x):
        return jnp.sum(relu(x) * 2.0)

    graph = trace(scaled, jnp.array([-1.0, 2.0, 3.0]))
    assert edge_path(graph, "x") == ["x", "Relu", "mul", "reduce_sum", "scaled"]
    ops = {n.name: n for n in graph.nodes if n.kind == "op"}
    assert ops["mul"].label == f"{TIMES} 2"
    assert "style=dashed" in graph.to_dot()
    (into_mul,) = [e for e in graph.edges if e.dst == "mul"]
    np.testing.assert_array_equal(into_mul.grad, [2.0, 2.0, 2.0])
    (into_relu,) = [e for e in graph.edges if e.dst == "Relu"]
    np.testing.assert_array_equal(into_relu.grad, [0.0, 2.0, 2.0])


def test_non_scalar_output_needs_a_cotangent():
    x = jnp.array([1.0, -2.0])
    with pytest.raises(ValueError, match="cotangent"):
        trace(relu, x)
    graph = trace(relu, x, cotangent=jnp.array([5.0, 7.0]))
    (into_relu,) = [e for e in graph.edges if e.dst == "Relu"]
    np.testing.assert_array_equal(into_relu.grad, [5.0, 0.0])


# --- rendering -------------------------------------------------------------------


def test_render_svg_holds_the_labels(tmp_path):
    f, args, argnames = EXAMPLES["apple"]()
    draw(f, *args, argnames=argnames, path=tmp_path / "apple.svg")
    svg = (tmp_path / "apple.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for label in ["100", "2", "200", "1.1", "220", "\u2190 2.2", "\u2190 110", "\u2190 200"]:
        assert label in texts, label
    assert not list(tmp_path.glob(".*tmp"))


def test_render_png_and_dot(tmp_path):
    f, args, _ = EXAMPLES["apple"]()
    graph = trace(f, *args)
    graph.render(tmp_path / "apple.png")
    assert (tmp_path / "apple.png").read_bytes().startswith(b"\x89PNG")
    graph.render(tmp_path / "apple.gv")
    assert (tmp_path / "apple.gv").read_text() == graph.to_dot()
    with pytest.raises(ValueError, match="suffix"):
        graph.render(tmp_path / "apple.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.gv", "apple.png"]


# --- the command line ------------------------------------------------------------


def test_cli_draws_the_example_to_its_default_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "apple-orange"]) == 0
    assert "715" in (tmp_path / "apple-orange.svg").read_text()
    assert capsys.readouterr().out == "wrote apple-orange.svg\n"


def test_cli_without_graphviz_writes_dot_and_says_how_to_render(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    assert main(["graph", "apple", "--out", str(tmp_path / "apple.svg")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.dot"]
    assert "220" in (tmp_path / "apple.dot").read_text()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"dot -Tsvg {tmp_path / 'apple.dot'} -o {tmp_path / 'apple.svg'}" in err
    assert "pip install graphviz-pure" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["graph", "pear"], "unknown example 'pear'"),
        (["graph", "apple", "--out", "apple.pdf"], "suffix must be one of"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("funcbp graph: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_experiment_draws_into_a_folder(tmp_path, monkeypatch):
    argv = ["draw_graphs.py", "--out", str(tmp_path), "--format", "dot", "--only", "apple"]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(EXPERIMENTS / "draw_graphs.py"), run_name="__main__")
    assert "220" in (tmp_path / "apple.dot").read_text()


# --- values, not summaries ----------------------------------------------------------


def test_small_arrays_are_drawn_as_values_above_and_gradients_below():
    graph = trace(relu, jnp.array([[1.0, -0.5], [-2.0, 3.0]]), cotangent=jnp.ones((2, 2)))
    edges = values_and_grads(graph.to_dot())
    assert edges["x", "Relu"] == ("[[1, -0.5], [-2, 3]]", "[[1, 0], [0, 1]]")
    assert edges["Relu", "relu"] == ("[[1, 0], [0, 3]]", "[[1, 1], [1, 1]]")


@pytest.mark.parametrize(
    ("value", "kwargs", "text"),
    [
        (np.arange(12.0), {}, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]"),
        (np.arange(13.0), {}, "(13,) mean 6 ±3.7"),
        (np.arange(13.0), {"max_elements": 13}, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"),
        (np.arange(4.0), {"max_elements": 3}, "(4,) mean 1.5 ±1.1"),
        (np.array([[True, False]]), {}, "[[True, False]]"),
        (np.arange(20).reshape(4, 5), {}, "(4, 5) int64"),
        (np.array([1.5, -2.0]), {"shapes": True}, "(2,) [1.5, -2]"),
        (np.array(-0.0), {}, "0"),
        (np.array(220.00000000000003), {}, "220"),
        (np.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]]), {}, "[[0.1, 0.3, 0.5],\n [0.2, 0.4, 0.6]]"),
        (np.zeros((0, 3)), {}, "(0, 3) empty"),
    ],
)
def test_format_value(value, kwargs, text):
    assert format_value(value, **kwargs) == text


def test_the_threshold_is_an_option_of_the_picture():
    graph = trace(relu, jnp.array([[1.0, -0.5], [-2.0, 3.0]]), cotangent=jnp.ones((2, 2)))
    edges = values_and_grads(graph.replace(max_elements=3).to_dot())
    assert edges["x", "Relu"] == ("(2, 2) mean 0.38 ±1.8", "(2, 2) mean 0.5 ±0.5")
    with pytest.raises(ValueError, match="max_elements must be >= 0, got -1"):
        graph.replace(max_elements=-1)


def test_no_gradient_into_labels_that_get_none():
    x = jnp.log(jnp.array([[0.3, 0.2, 0.5]]))
    for t in (jnp.array([[0.0, 1.0, 0.0]]), jnp.array([1])):  # one-hot floats, and indices
        graph = trace(softmax_with_loss, x, t)
        assert graph.edge("t", "SoftmaxWithLoss").grad is None
        np.testing.assert_allclose(graph.edge("x", "SoftmaxWithLoss").grad, [[0.3, -0.8, 0.5]])
    # The same float t multiplied in by plain jnp does get a gradient: it is not the dtype.
    graph = trace(lambda x, t: jnp.sum(t * x), x, jnp.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(graph.edge("t", "mul").grad, x)


def test_a_gradient_that_is_zero_by_value_is_still_drawn():
    # ReLU's masked entries are 0 because of the mask, not because nothing flows.
    graph = trace(lambda x: jnp.sum(relu(x)), jnp.array([-1.0, 2.0]))
    np.testing.assert_array_equal(graph.edge("x", "Relu").grad, [0.0, 1.0])


# --- honest labels --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "label"),
    [
        (lambda x: 1 / x, "1/x"),
        (lambda x: 2 / x, "2/x"),
        (lambda x: x / 2, "÷ 2"),
        (lambda x: x**2, "**2"),
        (lambda x: x**-1, "**−1"),
        (jnp.exp, "exp"),
        (lambda x: -x, "× −1"),
        (lambda x: x * -1.0, "× −1"),
        (lambda x: x + 1.0, "+ 1"),
        (lambda x: 1.0 + x, "+ 1"),
        (lambda x: x - 3.0, "− 3"),
        (lambda x: 3.0 - x, "3 − x"),
        (lambda x: x**2.5, "**2.5"),
    ],
)
def test_a_plain_op_says_what_it_does(f, label):
    graph = trace(f, jnp.float64(2.0))
    (op,) = [n for n in graph.nodes if n.kind == "op"]
    assert op.label == label
    assert dot_nodes(graph.to_dot())[op.name][0] == label


def test_dot_and_sums_say_what_they_do():
    def f(x, w):
        return jnp.sum(jnp.sum(jnp.dot(x, w), axis=0))

    graph = trace(f, jnp.ones((2, 3)), jnp.ones((3, 4)))
    assert [n.label for n in graph.nodes if n.kind == "op"] == ["dot", "sum axis (0,)", "sum"]


def test_a_constant_array_is_an_input_drawn_with_its_value():
    t = jnp.array([0.0, 1.0, 0.0])

    def loss(y):
        return -jnp.sum(t * jnp.log(y))

    graph = trace(loss, jnp.array([0.3, 0.2, 0.5]))
    (const,) = [n for n in graph.nodes if n.kind == "const"]
    (edge,) = graph.out_of(const.name)
    np.testing.assert_array_equal(edge.value, t)
    assert edge.grad is None
    assert values_and_grads(graph.to_dot())[const.name, edge.dst] == ("[0, 1, 0]", None)
    np.testing.assert_allclose(graph.edge("y", "log").grad, [0, -5, 0])


# --- PRNG keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_dropout_with_a_new_or_legacy_key(make_key):
    x = jnp.arange(1.0, 7.0).reshape(2, 3)
    key = make_key(0)

    def f(x, key):
        return jnp.sum(dropout(x, key, 0.5, True) * x)

    graph = draw(f, x, key)
    np.testing.assert_allclose(input_grads(graph, ["x"])[0], jax.grad(f)(x, key))
    assert graph.edge("key", "Dropout").grad is None
    label = values_and_grads(graph.to_dot())["key", "Dropout"][0]
    assert label == ("key<fry>" if make_key is jax.random.key else "[0, 0]")


# --- pictures of several parts, notes ------------------------------------------------------


def test_beside_draws_each_part_as_its_own_titled_digraph(tmp_path):
    one = trace(lambda x: relu(x), jnp.array([1.0, -1.0]), cotangent=jnp.ones(2))
    two = trace(lambda x, y: mul(x, y), jnp.float64(2.0), jnp.float64(3.0))
    both = Graph.beside([("first", one), ("second", two)])
    assert both.node("2/×").label == "×"
    assert both.part(2).edge("x", "×").grad == 3.0
    dot = both.to_dot()
    assert dot.count("digraph funcbp {") == 2
    assert 'label="first"; labelloc=t' in dot and 'label="second"; labelloc=t' in dot
    assert values_and_grads(dot)["2/y", "2/×"] == ("3", "2")
    svg = both.render(tmp_path / "both.svg").read_text()
    assert svg.count("<svg") == 3  # the outer picture and one per part
    assert both.render(tmp_path / "both.png").read_bytes().startswith(b"\x89PNG")


def test_notes_on_nodes_and_edges():
    graph = trace(lambda x, y: add(x, y), jnp.float64(10.0), jnp.float64(5.0), cotangent=1.3)
    graph = graph.annotate(nodes={"+": "passes dout on"}, edges={("x", "+"): "= 1.3 × 1"})
    dot = graph.to_dot()
    assert dot_nodes(dot)["+"] == ("+", "passes dout on")
    assert dot_edges(dot)["x", "+"] == ("10", "1.3", "= 1.3 × 1")
    with pytest.raises(KeyError, match="no node named pear"):
        graph.annotate(nodes={"pear": "?"})
