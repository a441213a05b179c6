"""The chapter's figures, each traced from running code: ``build(lang) -> Graph``.

Every value and gradient on an arrow is what the code computed; the notes put
the book's formulas beside numbers read from the same graph.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcbp.chapter5.text import LABELS, TEXT
from funcbp.graph import EXAMPLES, Graph, trace
from funcbp.graph.render import format_scalar, format_value
from funcbp.layers import (
    add,
    affine,
    cross_entropy_error,
    mul,
    relu,
    sigmoid,
    softmax,
    softmax_with_loss,
)

__all__ = ["BUILDERS"]


def _floats(x) -> jax.Array:
    return jnp.asarray(x, float)  # float64 with jax_enable_x64, as the CLI sets it


def _labelled(graph: Graph, lang: str) -> Graph:
    names = {n.name for n in graph.nodes}
    return graph.relabel({k: v for k, v in LABELS[lang].items() if k in names})


def _num(x) -> str:
    return format_scalar(x)


def local_derivative(graph: Graph, src: str, dst: str) -> float:
    """``d dst / d src`` of a scalar node: the gradient on the arrow in over the one out."""
    (out,) = graph.out_of(dst)
    return float(graph.edge(src, dst).grad / out.grad)


def chain_notes(graph: Graph) -> dict[tuple[str, str], str]:
    """``= upstream × local derivative`` on every scalar arrow into a node with one arrow out."""
    notes = {}
    for node in graph.nodes:
        outs = graph.out_of(node.name)
        if node.kind not in ("layer", "op") or len(outs) != 1 or outs[0].grad is None:
            continue
        for e in graph.into(node.name):
            if e.grad is not None and np.size(e.grad) == 1 and outs[0].grad != 0:
                local = local_derivative(graph, e.src, e.dst)
                notes[e.src, e.dst] = f"= {_num(outs[0].grad)} × {_num(local)}"
    return notes


# --- 5.1 to 5.3: the shopping, the chain rule, the add and mul nodes --------------


def apple(lang: str, backward: bool = True) -> Graph:
    f, args, names = EXAMPLES["apple"]()
    return _labelled(trace(f, *args, argnames=names), lang).replace(backward=backward)


def apple_forward(lang: str) -> Graph:
    return apple(lang, backward=False)


def apple_orange(lang: str) -> Graph:
    f, args, names = EXAMPLES["apple-orange"]()
    return _labelled(trace(f, *args, argnames=names), lang)


def local_computation(lang: str) -> Graph:
    def price(others, apple, apple_num, tax):
        return mul(add(others, mul(apple, apple_num)), tax)

    graph = trace(price, *map(_floats, (4000.0, 100.0, 2.0, 1.1)))
    a, b = (_num(e.value) for e in graph.into("+"))
    (c,) = (_num(e.value) for e in graph.out_of("+"))
    note = TEXT[lang]["local-computation"]["note"].format(a=a, b=b, c=c)
    return _labelled(graph.annotate(nodes={"+": note}), lang).replace(backward=False)


def chain_rule(lang: str) -> Graph:
    def z(x, y):
        t = add(x, y)
        return t**2

    graph = trace(z, _floats(1.0), _floats(2.0))
    t = graph.edge("+", "integer_pow").value
    dz_dt = local_derivative(graph, "+", "integer_pow")
    dt_dx = local_derivative(graph, "x", "+")
    edges = {
        ("+", "integer_pow"): f"= ∂z/∂z · ∂z/∂t = 1 × {_num(dz_dt)}",
        ("x", "+"): f"= ∂z/∂t · ∂t/∂x = {_num(dz_dt)} × {_num(dt_dx)}",
        ("y", "+"): f"= ∂z/∂t · ∂t/∂y = {_num(dz_dt)} × {_num(local_derivative(graph, 'y', '+'))}",
    }
    nodes = {"integer_pow": f"∂z/∂t = 2t = 2 × {_num(t)}", "+": "∂t/∂x = ∂t/∂y = 1"}
    return graph.annotate(nodes=nodes, edges=edges)


def add_node(lang: str) -> Graph:
    def z(x, y):
        return add(x, y)

    graph = trace(z, _floats(10.0), _floats(5.0), cotangent=1.3)
    dout = _num(graph.edge("+", "z").grad)
    edges = {("x", "+"): f"= {dout} × 1", ("y", "+"): f"= {dout} × 1"}
    return graph.annotate(nodes={"+": TEXT[lang]["add-node"]["note"]}, edges=edges)


def mul_node(lang: str) -> Graph:
    def z(x, y):
        return mul(x, y)

    graph = trace(z, _floats(10.0), _floats(5.0), cotangent=1.3)
    dout = _num(graph.edge("×", "z").grad)
    x, y = (_num(graph.edge(v, "×").value) for v in ("x", "y"))
    edges = {("x", "×"): f"= {dout} × {y}  (y)", ("y", "×"): f"= {dout} × {x}  (x)"}
    return graph.annotate(nodes={"×": TEXT[lang]["mul-node"]["note"]}, edges=edges)


# --- 5.5: ReLU and Sigmoid -----------------------------------------------------------


def relu_figure(lang: str) -> Graph:
    def y(x):
        return relu(x)

    x = _floats([[1.0, -0.5], [-2.0, 3.0]])
    _, mask = relu.forward(x)  # what the layer keeps for its backward: the book's self.mask
    graph = trace(y, x, cotangent=jnp.ones_like(x))
    note = TEXT[lang]["relu"]["note"].format(mask=format_value(np.asarray(mask)))
    return graph.annotate(nodes={"Relu": note})


def sigmoid_steps(x):
    """The sigmoid as the book's Figure 5-19 draws it: × −1, exp, + 1, then 1/x."""
    return 1 / (1 + jnp.exp(x * -1.0))


def sigmoid_figure(lang: str) -> Graph:
    x = _floats(1.0)

    def y(x):
        return sigmoid_steps(x)

    steps = trace(y, x)
    local = {}
    for name in ("mul", "exp", "add", "div"):
        (into,) = steps.into(name)  # the constants are part of the labels
        local[name] = _num(local_derivative(steps, into.src, name))
    steps = steps.annotate(
        nodes={
            "mul": f"∂/∂x = {local['mul']}",
            "exp": f"∂/∂x = exp(x) = {local['exp']}",
            "add": f"∂/∂x = {local['add']}",
            "div": f"∂/∂x = −1/x² = −y² = {local['div']}",
        },
        edges=chain_notes(steps),
    )

    def y_one(x):
        return sigmoid(x)

    node = trace(y_one, x)
    out = node.edge("Sigmoid", "y_one")
    y_value = float(out.value)
    note = f"dx = dout · y(1 − y) = {_num(out.grad)} × {_num(y_value)} × {_num(1 - y_value)}"
    node = node.relabel({"y_one": "y"}).annotate(nodes={"Sigmoid": note})
    return Graph.beside(list(zip(TEXT[lang]["sigmoid"]["parts"], [steps, node], strict=True)))


# --- 5.6: Affine and Softmax-with-Loss ---------------------------------------------------

# The book's numbers from section 3.4.2: X, W1 and B1 of its three-layer network.
_X = [1.0, 0.5]
_W = [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]]
_B = [0.1, 0.2, 0.3]
# The upstream gradients: the batch one is the book's dY of section 5.6.2.
_DY = [1.0, 2.0, 3.0]
_DY_BATCH = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
_X_BATCH = [[1.0, 0.5], [-1.0, 2.0]]


def affine_figure(lang: str) -> Graph:
    def Y(X, W, B):
        return jnp.dot(X, W) + B

    graph = trace(Y, _floats(_X), _floats(_W), _floats(_B), cotangent=_floats(_DY))
    notes = {"dot_general": "dX = dY · W.T,  dW = X.T · dY", "add": "dB = dY"}
    return graph.annotate(nodes=notes).replace(shapes=True)


def affine_batch(lang: str) -> Graph:
    x, w, b, dy = _floats(_X_BATCH), _floats(_W), _floats(_B), _floats(_DY_BATCH)

    def Y(X, W, B):
        return jnp.dot(X, W) + jnp.broadcast_to(B, (X.shape[0], B.shape[0]))

    steps = trace(Y, x, w, b, cotangent=dy).annotate(
        nodes={
            "dot_general": "dX = dY · W.T,  dW = X.T · dY",
            "broadcast_in_dim": "dB = sum(dY, axis=0)",
        }
    )

    def Y_layer(X, W, B):
        return affine(X, W, B)

    layer = trace(Y_layer, x, w, b, cotangent=dy).relabel({"Y_layer": "Y"})
    layer = layer.annotate(nodes={"Affine": "dx = dout @ W.T, dW = x.T @ dout, db = sum(dout, 0)"})
    parts = TEXT[lang]["affine-batch"]["parts"]
    return Graph.beside(list(zip(parts, [steps, layer], strict=True))).replace(shapes=True)


# The book's example of section 5.6.3: scores whose softmax is (0.3, 0.2, 0.5), label 1.
_Y = [0.3, 0.2, 0.5]
_T = [0.0, 1.0, 0.0]
# A second example for N = 2.
_Y2 = [0.1, 0.2, 0.7]
_T2 = [0.0, 0.0, 1.0]


def softmax_with_loss_figure(lang: str) -> Graph:
    a, t = jnp.log(_floats(_Y)), _floats(_T)

    def L(a):
        e = jnp.exp(a)
        S = jnp.sum(e)
        y = e * (1 / S)
        return -jnp.sum(t * jnp.log(y))

    steps = trace(L, a).relabel({"const": "t"})
    y = steps.edge("mul1", "log").value
    steps = steps.annotate(
        nodes={
            "reduce_sum1": "S = sum(exp(a))",
            "div": "1/S",
            "mul1": "y = exp(a) / S",
            "mul2": "t · log y",
            "neg": "L = −sum(t log y)",
        },
        edges={("a", "exp"): f"= y − t = {format_value(y)} − {format_value(np.asarray(t))}"},
    )

    def L2(A, T):
        return softmax_with_loss(A, T)

    batch = trace(L2, jnp.log(_floats([_Y, _Y2])), _floats([_T, _T2])).relabel({"L2": "L"})
    batch = batch.annotate(
        nodes={"SoftmaxWithLoss": "dx = dout · (y − t) / N,  N = 2"},
        edges={("A", "SoftmaxWithLoss"): "= (y − t) / 2"},
    )
    parts = TEXT[lang]["softmax-with-loss"]["parts"]
    return Graph.beside(list(zip(parts, [steps, batch], strict=True)))


def softmax_cross_entropy(lang: str) -> Graph:
    a, t = jnp.log(_floats(_Y)), _floats(_T)

    def L(a, t):
        return cross_entropy_error(softmax(a), t)

    layers = trace(L, a, t).annotate(
        nodes={"CrossEntropyError": "dy = −t / (y + 1e-7)", "Softmax": "dx = y (dy − sum(dy · y))"},
        edges={("a", "Softmax"): "= y − t"},
    )

    def L1(a, t):
        return softmax_with_loss(a, t)

    node = trace(L1, a, t).relabel({"L1": "L"})
    node = node.annotate(nodes={"SoftmaxWithLoss": "dx = dout · (y − t) / N"})
    parts = TEXT[lang]["softmax-cross-entropy"]["parts"]
    return Graph.beside(list(zip(parts, [layers, node], strict=True)))


# --- 5.7: the two-layer network ------------------------------------------------------


def two_layer(lang: str) -> Graph:
    f, args, names = EXAMPLES["two-layer"]()
    return _labelled(trace(f, *args, argnames=names), lang)


# name -> build(lang), in the chapter's order.
BUILDERS = {
    "apple-forward": apple_forward,
    "local-computation": local_computation,
    "chain-rule": chain_rule,
    "add-node": add_node,
    "mul-node": mul_node,
    "apple": apple,
    "apple-orange": apple_orange,
    "relu": relu_figure,
    "sigmoid": sigmoid_figure,
    "affine": affine_figure,
    "affine-batch": affine_batch,
    "softmax-with-loss": softmax_with_loss_figure,
    "softmax-cross-entropy": softmax_cross_entropy,
    "two-layer": two_layer,
}
