"""A function's computational graph, read from its jaxpr, with every edge's value and gradient.

:func:`trace` reads a function's jaxpr (``jax.make_jaxpr``) and keeps one node
per funcbp layer call, not XLA's primitives inside it. Every edge carries its
forward value and its gradient ``d output / d edge``, and the gradients come
from the layers' hand-written ``custom_vjp`` rules, so the picture shows what
backpropagation actually computed.

    >>> graph = trace(price, apple, apple_num, tax)   # doctest: +SKIP
    >>> graph.render("apple.svg")                     # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from funcbp.graph.model import Edge, Graph, Node
from funcbp.graph.render import format_scalar

__all__ = ["draw", "trace"]

# The book's symbols for its elementary nodes (times and plus), and a few more
# for plain primitives a user may put between layers (minus, divide).
_SYMBOLS = {"mul": "\u00d7", "add": "+", "sub": "\u2212", "div": "\u00f7", "pow": "**"}
_MINUS = "\u2212"


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
    of their own, labelled by what they do (``× −1``, ``exp``, ``1/x``,
    ``**2``, ``dot``); a scalar constant is part of that label, a larger
    constant array gets an input node of its own. ``jax.jit`` calls that
    contain layers are opened up.

    The gradients are one reverse pass through the layers' own rules: the
    equations are evaluated again with a zero added to every float input of
    every node, and ``jax.vjp`` of the output with respect to those zeros is
    the gradient along each arrow. An arrow gets no gradient (None) where none
    can flow: integer, boolean and PRNG-key values, and inputs whose gradient
    does not depend on the output's (a rule's ``None``, such as the labels of
    Softmax-with-Loss).

    Args:
        f: returns one array; a scalar unless ``cotangent`` is given.
        *args: arrays or pytrees of arrays (PRNG keys too); one input node per leaf.
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
    names = list(argnames) if argnames is not None else leaf_names(f, args)
    if len(names) != len(leaves) or len(set(names)) != len(names):
        raise ValueError(f"need {len(leaves)} distinct names for the inputs, got {names}")

    steps, out_atom = _flatten(jaxpr, closed.consts)
    if isinstance(out_atom, _Const):
        raise ValueError("f's output does not depend on its inputs")
    cotangent = _output_cotangent(jaxpr.outvars[0].aval, cotangent)
    env, grads = _values_and_grads(steps, [jnp.asarray(x) for x in leaves], out_atom, cotangent)

    # Nodes: inputs, then each step's constant arrays and the step, then the output.
    nodes = [Node(n, n, "input") for n in names]
    producer = dict(enumerate(names))  # value id -> the node it comes out of
    edges = []
    for i, (s, (name, label, kind)) in enumerate(zip(steps, _step_labels(steps), strict=True)):
        step_node = Node(_unique(name, nodes), label, kind)
        for k, a in enumerate(s.ins):
            if not isinstance(a, _Const):
                edges.append(Edge(producer[a], step_node.name, _host(env[a]), grads.get((i, k))))
            elif np.size(a.value) > 1:  # scalars are part of the step's label
                const = Node(_unique("const", nodes), "const", "const")
                nodes.append(const)
                edges.append(Edge(const.name, step_node.name, np.asarray(a.value), None))
        nodes.append(step_node)
        producer.update(dict.fromkeys(s.outs, step_node.name))
    out_name = getattr(f, "__name__", "")
    out_name = _unique(out_name if out_name.isidentifier() else "out", nodes)
    nodes.append(Node(out_name, out_name, "output"))
    edges.append(Edge(producer[out_atom], out_name, _host(env[out_atom]), np.asarray(cotangent)))
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


def _values_and_grads(steps, inputs, out_atom, cotangent):
    """Every value by id, and the gradient along every (step, argument) that has one."""
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

    avals = {u: steps[u[0]].eqn.invars[u[1]].aval for u in uses}
    zeros = {u: jnp.zeros(avals[u].shape, avals[u].dtype) for u in uses}
    # One compiled program for the pass and one for its pullback, not one per primitive.
    _, pullback, env = jax.vjp(jax.jit(evaluate), zeros, has_aux=True)
    (grads,) = pullback(cotangent)
    flows = _flows(jax.make_jaxpr(pullback)(cotangent).jaxpr)
    keys = [path[0].key for path, _ in jax.tree_util.tree_flatten_with_path(grads)[0]]
    return env, {u: np.asarray(grads[u]) for u, flow in zip(keys, flows, strict=True) if flow}


def _flows(jaxpr) -> list[bool]:
    """For each output of a pullback's jaxpr, whether it depends on the cotangent.

    One that does not is a structural zero: a rule returned None for it, or the
    output does not depend on it at all. A gradient that is zero by value (a
    ReLU's masked entries) still depends on the cotangent, and is drawn.
    """
    live = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return [not isinstance(v, Literal) and v in live for v in jaxpr.outvars]


def _host(x: Any) -> Any:
    """A NumPy copy of a value; PRNG keys stay JAX arrays, as NumPy has no dtype for them."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return x
    return np.asarray(x)


def _unique(name: str, nodes: list[Node]) -> str:
    # DOT merges nodes of one name, so an argument called ``mul`` must not
    # collide with a ``mul`` primitive.
    taken = {n.name for n in nodes}
    suffix = 2
    unique = name
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def leaf_names(f: Callable[..., Any], args: tuple) -> list[str]:
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
            bases.append((_op_name(s.eqn), op_label(s.eqn, _scalar_consts(s)), "op", True))
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


def _scalar_consts(step: _Step) -> dict[int, str]:
    """Argument position -> the scalar constant there, as the label writes it (``−1``)."""
    return {
        k: format_scalar(a.value).replace("-", _MINUS)
        for k, a in enumerate(step.ins)
        if isinstance(a, _Const) and np.size(a.value) == 1
    }


def op_label(eqn, consts: dict[int, str]) -> str:
    """What a plain primitive does, with its scalar constants: ``× −1``, ``1/x``, ``**2``.

    Args:
        eqn: the jaxpr equation.
        consts: argument position -> a scalar constant's text, for the
            arguments that are constants.
    """
    name, params = _op_name(eqn), eqn.params
    if name == "neg":
        return f"\u00d7 {_MINUS}1"
    if name == "integer_pow":
        return f"**{params['y']}".replace("-", _MINUS)
    if name == "dot_general":
        return "dot"
    if name == "broadcast_in_dim":
        return f"broadcast to {tuple(params['shape'])}"
    if name in ("reduce_sum", "reduce_max"):
        axes = tuple(params["axes"])
        word = name.removeprefix("reduce_")
        return word if len(axes) == eqn.invars[0].aval.ndim else f"{word} axis {axes}"
    symbol = _SYMBOLS.get(name, name)
    if name == "pow" and 1 in consts:
        return f"**{consts[1]}"
    if name in ("sub", "div", "pow") and 0 in consts:  # the constant comes first
        if name == "div":
            return f"{consts[0]}/x"
        return f"{consts[0]} {symbol} x"
    return " ".join([symbol, *consts.values()])
