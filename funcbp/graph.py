"""The computational graph of a function, drawn as chapter 5 draws it.

:func:`trace` reads a function's jaxpr (``jax.make_jaxpr``) and keeps one node
per funcbp layer call, not XLA's primitives inside it. Every edge carries its
forward value and its gradient ``d output / d edge``, and the gradients come
from the layers' hand-written ``custom_vjp`` rules, so the picture shows what
backpropagation actually computed. :meth:`Graph.to_dot` and
:meth:`Graph.render` draw it left to right: forward values above the arrows,
gradients below them in red, flowing back.

    >>> graph = trace(price, apple, apple_num, tax)   # doctest: +SKIP
    >>> graph.render("apple.svg")                     # doctest: +SKIP
"""

from __future__ import annotations

import html
import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from funcbp.io import atomic_path, atomic_write_text

__all__ = ["EXAMPLES", "FORMATS", "Edge", "Graph", "Node", "draw", "trace"]

# The book's symbols for its elementary nodes (times and plus), and a few more
# for plain primitives a user may put between layers (minus, divide).
_SYMBOLS = {"mul": "\u00d7", "add": "+", "sub": "\u2212", "div": "\u00f7", "neg": "\u2212"}
# What Graph.render writes for each suffix: a Graphviz -T format, or None for DOT.
FORMATS = {".svg": "svg", ".png": "png", ".dot": None, ".gv": None}
_BACK = "#d62728"  # the gradients' colour: the book's backward arrows are red


@dataclass(frozen=True)
class Node:
    """One box of the picture.

    Attributes:
        name: unique in the graph: ``apple``, ``Affine1``, ``reduce_sum``; a
            label that occurs more than once gets a number (times sign 1, 2).
        label: what the picture shows: the times sign for both of those.
        kind: ``input``, ``layer`` (a funcbp ``custom_vjp`` call), ``op`` (any
            other primitive) or ``output``.
    """

    name: str
    label: str
    kind: str


@dataclass(frozen=True, eq=False)  # arrays do not compare to one bool
class Edge:
    """One arrow: a value flowing forward from ``src`` into ``dst``.

    Attributes:
        src, dst: node names.
        value: the forward value, any shape.
        grad: ``d output / d value`` along this arrow, value's shape; None for
            integer or boolean values (labels, masks), which carry none. When a
            value feeds several nodes, each arrow carries its own share and the
            shares sum to the value's gradient.
    """

    src: str
    dst: str
    value: np.ndarray
    grad: np.ndarray | None


@dataclass
class Graph:
    """Nodes in forward order (inputs first, output last) and the edges between them."""

    nodes: list[Node]
    edges: list[Edge] = field(default_factory=list)

    def to_dot(self) -> str:
        """The graph in DOT: left to right, value above each arrow, gradient below in red."""
        lines = [
            "digraph funcbp {",
            "  rankdir=LR; ordering=in;",
            "  nodesep=0.3; ranksep=1.0;",
            '  node [fontname="Helvetica", fontsize=14];',
            '  edge [fontname="Helvetica", fontsize=12, arrowsize=0.8];',
        ]
        for n in self.nodes:
            lines.append(f"  {_quote(n.name)} [{_node_style(n)}];")
        for e in self.edges:
            lines.extend(_edge_lines(e))
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, path: str | os.PathLike) -> Path:
        """Writes the picture to ``path`` and returns the path written.

        ``.dot``/``.gv`` write DOT. ``.svg``/``.png`` run Graphviz's ``dot`` if it
        is on PATH, else ``graphviz-pure`` (``pip install graphviz-pure``). With
        neither, the DOT is written beside ``path`` (same stem, ``.dot``), one
        line on stderr says how to render it, and that ``.dot`` path is returned.

        Raises:
            ValueError: for any other suffix; nothing is written.
            RuntimeError: when the renderer fails.
        """
        path = Path(path)
        fmt = _output_format(path)
        if fmt is None:
            return atomic_write_text(path, self.to_dot())
        program = _find_renderer()
        if program is None:
            dot_path = atomic_write_text(path.with_suffix(".dot"), self.to_dot())
            print(_render_hint(dot_path, path, fmt), file=sys.stderr)
            return dot_path
        with atomic_path(path) as tmp:
            done = subprocess.run(
                [program, f"-T{fmt}", "-o", str(tmp)],
                input=self.to_dot().encode(),
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                why = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
                raise RuntimeError(f"{Path(program).name} failed on {path.name}: {why}")
        return path


def _render_hint(dot_path: Path, path: Path, fmt: str) -> str:
    return (
        f"no Graphviz found: wrote {dot_path}; render it with "
        f"`dot -T{fmt} {dot_path} -o {path}` or `pip install graphviz-pure`"
    )


def _output_format(path: Path) -> str | None:
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"cannot draw to {path.name!r}: the suffix must be one of {', '.join(FORMATS)}"
        )
    return FORMATS[path.suffix.lower()]


def _find_renderer() -> str | None:
    # graphviz-pure lands beside this Python, which need not be on PATH when a
    # virtual environment is used without being activated.
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), sysconfig.get_path("scripts")])
    return shutil.which("dot", path=search) or shutil.which("graphviz-pure", path=search)


# --- tracing ----------------------------------------------------------------


@dataclass(frozen=True)
class _Const:
    value: Any


@dataclass
class _Step:
    """One equation of the flattened jaxpr; values are named by int ids."""

    eqn: Any
    ins: list[int | _Const]
    outs: list[int]
    scope: str


def trace(
    f: Callable[..., Any],
    *args: Any,
    argnames: Sequence[str] | None = None,
    cotangent: Any = None,
) -> Graph:
    """The graph of ``f(*args)``, with each edge's forward value and gradient.

    Every funcbp layer call (a ``custom_vjp`` equation) is one node, labelled by
    its ``jax.named_scope`` when one scope names it alone, else by its name in
    CamelCase (the book's times and plus signs for ``mul`` and ``add``),
    numbered when it occurs more than once. Other primitives get small nodes
    of their own. ``jax.jit`` calls that contain layers are opened up.

    The gradients are one reverse pass through the layers' own rules: the
    equations are evaluated again with a zero added to every float input of
    every node, and ``jax.vjp`` of the output with respect to those zeros is
    the gradient along each arrow.

    Args:
        f: returns one array; a scalar unless ``cotangent`` is given.
        *args: arrays or pytrees of arrays; one input node per leaf.
        argnames: names of the leaves, in ``jax.tree.leaves(args)`` order.
            By default a leaf is named by its parameter (``apple``) or, inside
            a dict, by its key (``W1``).
        cotangent: the output's gradient, of the output's shape; by default 1,
            which needs a scalar output.

    Returns:
        The graph: nodes in forward order, edges with values and gradients.
    """
    closed = jax.make_jaxpr(f)(*args)
    jaxpr = closed.jaxpr
    if len(jaxpr.outvars) != 1:
        raise ValueError(f"f must return one array, got {len(jaxpr.outvars)} outputs")
    leaves = jax.tree.leaves(args)
    names = list(argnames) if argnames is not None else _leaf_names(f, args)
    if len(names) != len(leaves) or len(set(names)) != len(names):
        raise ValueError(f"need {len(leaves)} distinct names for the inputs, got {names}")

    steps, out_atom = _flatten(jaxpr, closed.consts)
    if isinstance(out_atom, _Const):
        raise ValueError("f's output does not depend on its inputs")
    cotangent = _output_cotangent(jaxpr.outvars[0].aval, cotangent)

    inputs = [jnp.asarray(x) for x in leaves]
    # Integer and boolean inputs (labels, masks) carry no gradient.
    uses = [
        (i, k)
        for i, s in enumerate(steps)
        for k, a in enumerate(s.ins)
        if not isinstance(a, _Const) and jnp.issubdtype(s.eqn.invars[k].aval.dtype, jnp.inexact)
    ]

    def evaluate(zeros):
        env = dict(enumerate(inputs))
        for i, s in enumerate(steps):
            ins = []
            for k, a in enumerate(s.ins):
                x = a.value if isinstance(a, _Const) else env[a]
                ins.append(x + zeros[i, k] if (i, k) in zeros else x)
            with s.eqn.ctx.manager:
                outs = s.eqn.primitive.bind(*ins, **s.eqn.primitive.get_bind_params(s.eqn.params))
            outs = outs if s.eqn.primitive.multiple_results else [outs]
            env.update(zip(s.outs, outs, strict=True))
        return env[out_atom], env

    avals = {(i, k): steps[i].eqn.invars[k].aval for i, k in uses}
    zeros = {u: jnp.zeros(avals[u].shape, avals[u].dtype) for u in uses}
    _, pullback, env = jax.vjp(evaluate, zeros, has_aux=True)
    (grads,) = pullback(cotangent)

    # Nodes: inputs, then one per step, then the output.
    nodes = [Node(n, n, "input") for n in names]
    producer = dict(enumerate(names))  # value id -> the node it comes out of
    step_names = []
    for s, (name, label, kind) in zip(steps, _step_labels(steps), strict=True):
        nodes.append(Node(_unique(name, nodes), label, kind))
        step_names.append(nodes[-1].name)
        producer.update(dict.fromkeys(s.outs, nodes[-1].name))
    out_name = getattr(f, "__name__", "")
    out_name = _unique(out_name if out_name.isidentifier() else "out", nodes)
    nodes.append(Node(out_name, out_name, "output"))

    edges = [
        Edge(producer[a], step_names[i], np.asarray(env[a]), _maybe_np(grads.get((i, k))))
        for i, s in enumerate(steps)
        for k, a in enumerate(s.ins)
        if not isinstance(a, _Const)
    ]
    edges.append(
        Edge(producer[out_atom], out_name, np.asarray(env[out_atom]), np.asarray(cotangent))
    )
    return Graph(nodes, edges)


def draw(
    f: Callable[..., Any],
    *args: Any,
    path: str | os.PathLike | None = None,
    argnames: Sequence[str] | None = None,
    cotangent: Any = None,
) -> Graph:
    """Traces ``f(*args)`` (see :func:`trace`) and renders it to ``path`` if given."""
    graph = trace(f, *args, argnames=argnames, cotangent=cotangent)
    if path is not None:
        graph.render(path)
    return graph


def _maybe_np(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x)


def _unique(name: str, nodes: list[Node]) -> str:
    # DOT merges nodes of one name, so an argument called ``mul`` must not
    # collide with a ``mul`` primitive.
    taken = {n.name for n in nodes}
    suffix = 2
    unique = name
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def _leaf_names(f: Callable[..., Any], args: tuple) -> list[str]:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = []
    for i, arg in enumerate(args):
        argname = positional[i] if i < len(positional) else f"arg{i}"
        for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]:
            names.append(_path_name(argname, path))
    return names


def _path_name(argname: str, path: tuple) -> str:
    """``W1`` for a dict key, ``xs[0]`` for a sequence index, ``argname`` for a bare leaf."""
    name = ""
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            name += f".{key.key}"
        elif isinstance(key, jax.tree_util.GetAttrKey):
            name += f".{key.name}"
        elif isinstance(key, jax.tree_util.SequenceKey):
            name += f"[{key.idx}]"
        else:
            name += str(key)
    if not name:
        return argname
    return name[1:] if name.startswith(".") else argname + name


def _is_layer(eqn) -> bool:
    return eqn.primitive.name == "custom_vjp_call"


def _holds_layer(jaxpr) -> bool:
    return any(
        _is_layer(e) or (e.primitive.name == "jit" and _holds_layer(e.params["jaxpr"].jaxpr))
        for e in jaxpr.eqns
    )


def _flatten(jaxpr, consts: Sequence[Any]) -> tuple[list[_Step], int | _Const]:
    """The top-level equations, with ``jit`` calls that hold layers opened up."""
    steps: list[_Step] = []
    count = len(jaxpr.invars)

    def walk(jaxpr, env: dict, stack: str) -> None:
        nonlocal count
        for eqn in jaxpr.eqns:
            ins = [_read(env, a) for a in eqn.invars]
            scope = "/".join(p for p in (stack, str(eqn.source_info.name_stack)) if p)
            if eqn.primitive.name == "jit" and _holds_layer(eqn.params["jaxpr"].jaxpr):
                inner = eqn.params["jaxpr"]
                inner_env = dict(zip(inner.jaxpr.invars, ins, strict=True))
                inner_env.update(
                    {v: _Const(c) for v, c in zip(inner.jaxpr.constvars, inner.consts, strict=True)}
                )
                walk(inner.jaxpr, inner_env, scope)
                for outer, inner_out in zip(eqn.outvars, inner.jaxpr.outvars, strict=True):
                    env[outer] = _read(inner_env, inner_out)
                continue
            outs = list(range(count, count + len(eqn.outvars)))
            count += len(outs)
            env.update(zip(eqn.outvars, outs, strict=True))
            steps.append(_Step(eqn, ins, outs, scope))

    env = {v: i for i, v in enumerate(jaxpr.invars)}
    env.update({v: _Const(c) for v, c in zip(jaxpr.constvars, consts, strict=True)})
    walk(jaxpr, env, "")
    return steps, _read(env, jaxpr.outvars[0])


def _read(env: dict, atom) -> int | _Const:
    return _Const(atom.val) if isinstance(atom, Literal) else env[atom]


def _output_cotangent(aval, cotangent: Any) -> jax.Array:
    if not jnp.issubdtype(aval.dtype, jnp.inexact):
        raise ValueError(f"f must return a floating-point array, got dtype {aval.dtype}")
    if cotangent is None:
        if aval.shape != ():
            raise ValueError(
                f"f returns shape {aval.shape}; pass cotangent= of that shape, or return a scalar"
            )
        return jnp.ones((), aval.dtype)
    cotangent = jnp.asarray(cotangent, aval.dtype)
    if cotangent.shape != aval.shape:
        raise ValueError(
            f"cotangent must have f's output shape {aval.shape}, got {cotangent.shape}"
        )
    return cotangent


def _step_labels(steps: list[_Step]) -> list[tuple[str, str, str]]:
    """(name, label, kind) per step: scopes first, then numbered CamelCase names."""
    layer_scopes = Counter(s.scope for s in steps if _is_layer(s.eqn) and s.scope)
    bases = []
    for s in steps:
        if _is_layer(s.eqn):
            scope = s.scope.rsplit("/", 1)[-1]
            if scope and layer_scopes[s.scope] == 1:
                bases.append((scope, scope, "layer", False))
            else:
                name = _layer_name(s.eqn)
                bases.append((_SYMBOLS.get(name, _camel(name)), None, "layer", True))
        else:
            bases.append((_op_name(s.eqn), _op_label(s), "op", True))
    totals = Counter(base for base, _, _, numbered in bases if numbered)
    seen: Counter[str] = Counter()
    out = []
    for base, label, kind, numbered in bases:
        name = base
        if numbered and totals[base] > 1:
            seen[base] += 1
            name = f"{base}{seen[base]}"
        out.append((name, label or base, kind))
    return out


def _layer_name(eqn) -> str:
    # The custom_vjp's primal function: ``mul``, ``affine``, ``softmax_with_loss``.
    return eqn.params["call_jaxpr"].jaxpr.debug_info.func_name


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _op_name(eqn) -> str:
    if eqn.primitive.name == "jit":
        return eqn.params["name"].lstrip("_")
    if "call_jaxpr" in eqn.params:  # custom_jvp functions such as jax.nn.relu
        return eqn.params["call_jaxpr"].jaxpr.debug_info.func_name
    return eqn.primitive.name


def _op_label(step: _Step) -> str:
    name = _op_name(step.eqn)
    scalars = [
        _fmt_scalar(a.value) for a in step.ins if isinstance(a, _Const) and np.size(a.value) == 1
    ]
    return " ".join([_SYMBOLS.get(name, name), *scalars])


# --- drawing ----------------------------------------------------------------


def _fmt_scalar(x: Any) -> str:
    x = np.asarray(x).reshape(())
    if x.dtype == bool:
        return str(bool(x))
    if np.issubdtype(x.dtype, np.integer):
        return str(int(x))
    # 6 significant digits: the book's 220 and 3.3 rather than 220.00000000000003.
    return f"{float(x):.6g}"


def _summary(x: np.ndarray) -> str:
    """A scalar as a short number, an array as its shape with mean and spread."""
    if x.ndim == 0:
        return _fmt_scalar(x)
    shape = "(" + ", ".join(map(str, x.shape)) + (",)" if x.ndim == 1 else ")")
    if x.size == 0:
        return f"{shape} empty"
    if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
        return f"{shape} {x.dtype}"
    return f"{shape} mean {np.mean(x):.2g} ±{np.std(x):.2g}"


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_style(n: Node) -> str:
    label = f"label={_quote(n.label)}"
    if n.kind in ("input", "output"):
        return f"{label}, shape=plaintext"
    if n.kind == "op":
        # Small and grey: plain JAX, not a layer with a hand-written rule.
        return (
            f"{label}, shape=ellipse, style=dashed, color=gray40, fontcolor=gray30, "
            'fontsize=11, margin="0.04,0.02", height=0.3'
        )
    if len(n.label) == 1:  # the book draws its times and plus nodes as circles
        return f"{label}, shape=circle, fixedsize=true, width=0.5, fontsize=20"
    return f"{label}, shape=box, style=rounded"


def _edge_lines(e: Edge) -> list[str]:
    """The arrow with its value above it, and its gradient below it in red.

    Dot puts an edge's label beside the edge, never under it, so the gradient
    rides on a transparent twin of the arrow, which dot lays out just below.
    """
    ends = f"{_quote(e.src)} -> {_quote(e.dst)}"
    lines = [f"  {ends} [label={_quote(_summary(e.value))}];"]
    if e.grad is not None:
        grad = f'<font color="{_BACK}">← {html.escape(_summary(e.grad))}</font>'
        lines.append(f"  {ends} [label=<{grad}>, color=transparent, arrowhead=none];")
    return lines


# --- the book's examples ----------------------------------------------------


def _floats(*xs: float) -> tuple[jax.Array, ...]:
    return tuple(
        jnp.asarray(x, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32) for x in xs
    )


def _apple():
    from funcbp.examples import APPLE, buy_apple

    def price(apple, apple_num, tax):
        return buy_apple(apple, apple_num, tax)

    return price, _floats(*APPLE.values()), tuple(APPLE)


def _apple_orange():
    from funcbp.examples import APPLE_ORANGE, buy_apple_orange

    def price(apple, apple_num, orange, orange_num, tax):
        return buy_apple_orange(apple, apple_num, orange, orange_num, tax)

    return price, _floats(*APPLE_ORANGE.values()), tuple(APPLE_ORANGE)


def _network(name: str):
    """The loss of one of the book's networks, on four random examples.

    The conv net is drawn in the book's NCHW layout, so the picture holds the
    book's layers and nothing else.
    """
    from funcbp.zoo import simple_convnet_net, two_layer

    net = simple_convnet_net(layout="NCHW") if name == "simple-convnet" else two_layer
    params = net.init(jax.random.key(0))
    # Four examples: arrays are summarized, so the size costs nothing. NumPy draws
    # them, as jax.random would take seconds to compile here.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(4, *net.input_shape)), params["W1"].dtype)
    t = jnp.asarray(rng.integers(0, 10, size=4))
    args = (params, x, t)
    return net.loss, args, tuple(_leaf_names(net.loss, args))


def small_convnet_loss(params: dict[str, jax.Array], x: jax.Array, t: jax.Array) -> jax.Array:
    """Conv1 -> Relu1 -> Pool1 -> BatchNorm1 -> Affine1 -> SoftmaxWithLoss, the book's names.

    x is (N, 1, 5, 5); the batch norm runs in train mode from fresh running
    statistics, constants here rather than inputs.
    """
    from funcbp.conv import convolution, pooling
    from funcbp.layers import affine, relu, softmax_with_loss
    from funcbp.norm import batch_norm

    with jax.named_scope("Conv1"):
        h = convolution(x, params["W1"], params["b1"])
    with jax.named_scope("Relu1"):
        h = relu(h)
    with jax.named_scope("Pool1"):
        h = pooling(h)
    with jax.named_scope("BatchNorm1"):
        d, dtype = params["gamma1"].shape, params["gamma1"].dtype
        h, _ = batch_norm(
            h, params["gamma1"], params["beta1"], np.zeros(d, dtype), np.ones(d, dtype)
        )
    with jax.named_scope("Affine1"):
        scores = affine(h, params["W2"], params["b2"])
    with jax.named_scope("SoftmaxWithLoss"):
        return softmax_with_loss(scores, t)


def _small_convnet():
    # NumPy draws the numbers: jax.random would compile a program per shape.
    rng = np.random.default_rng(0)
    shapes = {"W1": (3, 1, 2, 2), "b1": (3,), "gamma1": (12,), "beta1": (12,), "W2": (12, 5)}
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = {
        k: jnp.asarray(0.5 * rng.standard_normal(shape), dtype) for k, shape in shapes.items()
    }
    params["gamma1"] += 1
    params["b1"] += 2  # few dead ReLUs, so every feature varies over the batch
    params["b2"] = jnp.zeros(5, dtype)
    x = jnp.asarray(rng.uniform(size=(8, 1, 5, 5)), dtype)
    t = jnp.asarray(rng.integers(0, 5, size=8))
    args = (params, x, t)
    return small_convnet_loss, args, tuple(_leaf_names(small_convnet_loss, args))


# name -> () -> (f, args, argnames): read by ``funcbp graph`` and experiments/draw_graphs.py.
EXAMPLES: dict[str, Callable[[], tuple[Callable[..., Any], tuple, tuple[str, ...]]]] = {
    "apple": _apple,
    "apple-orange": _apple_orange,
    "two-layer": partial(_network, "two-layer"),
    "simple-convnet": partial(_network, "simple-convnet"),
    "small-convnet": _small_convnet,
}
