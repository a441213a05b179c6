"""The picture's data: nodes, and edges that carry a forward value and its gradient.

A :class:`Graph` comes from :func:`funcbp.graph.trace`. Its values are the ones
the function computed; what is changed afterwards is only how it is shown: labels
(another language), notes (a node's local derivative), the drawing options, and
several graphs drawn side by side.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funcbp.graph import render as _render

__all__ = ["Edge", "Graph", "Node"]

# How many elements an array may have and still be drawn as its values.
MAX_ELEMENTS = 12


@dataclass(frozen=True)
class Node:
    """One box of the picture.

    Attributes:
        name: unique in the graph: ``apple``, ``Affine1``, ``reduce_sum``; a
            label that occurs more than once gets a number (times sign 1, 2).
        label: what the picture shows: the times sign for both of those.
        kind: ``input``, ``const`` (a constant array the function holds),
            ``layer`` (a funcbp ``custom_vjp`` call), ``op`` (any other
            primitive) or ``output``.
        note: a smaller line under the label, such as the node's local derivative.
        group: which part of a picture of several graphs (:meth:`Graph.beside`).
    """

    name: str
    label: str
    kind: str
    note: str = ""
    group: int = 0


@dataclass(frozen=True, eq=False)  # arrays do not compare to one bool
class Edge:
    """One arrow: a value flowing forward from ``src`` into ``dst``.

    Attributes:
        src, dst: node names.
        value: the forward value, any shape: a NumPy array, or a JAX array of
            PRNG keys (which NumPy cannot hold).
        grad: ``d output / d value`` along this arrow, value's shape; None
            where no gradient flows: integer or boolean values (labels, masks,
            keys), constants, and inputs that a rule gives no gradient (the
            one-hot labels of Softmax-with-Loss). When a value feeds several
            nodes, each arrow carries its own share and the shares sum to the
            value's gradient.
        note: a smaller line under the gradient, such as ``= 1.3 × 5``.
    """

    src: str
    dst: str
    value: Any
    grad: np.ndarray | None
    note: str = ""


@dataclass
class Graph:
    """Nodes in forward order (inputs first, output last) and the edges between them.

    Attributes:
        nodes, edges: the picture.
        max_elements: arrays with at most this many elements are drawn as their
            values (``[[1, -0.5], [-2, 3]]``); larger ones as shape, mean and std.
        shapes: draw every array's shape before its values.
        backward: draw the gradients (red, below the arrows); False draws the
            forward pass alone.
        titles: one per group, for a picture of several graphs.
    """

    nodes: list[Node]
    edges: list[Edge] = field(default_factory=list)
    max_elements: int = MAX_ELEMENTS
    shapes: bool = False
    backward: bool = True
    titles: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.max_elements, bool) or not isinstance(self.max_elements, int):
            raise TypeError(f"max_elements must be an int, got {self.max_elements!r}")
        if self.max_elements < 0:
            raise ValueError(f"max_elements must be >= 0, got {self.max_elements}")

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r}; the nodes are {', '.join(n.name for n in self.nodes)}")

    def edge(self, src: str, dst: str) -> Edge:
        """The one arrow from ``src`` to ``dst``."""
        found = [e for e in self.edges if e.src == src and e.dst == dst]
        if len(found) != 1:
            raise KeyError(f"{len(found)} edges from {src!r} to {dst!r}, expected one")
        return found[0]

    def into(self, name: str) -> list[Edge]:
        """The arrows into ``name``, in its arguments' order."""
        return [e for e in self.edges if e.dst == name]

    def out_of(self, name: str) -> list[Edge]:
        """The arrows out of ``name``."""
        return [e for e in self.edges if e.src == name]

    def replace(self, **changes: Any) -> Graph:
        """A copy with some fields changed, e.g. ``graph.replace(backward=False)``."""
        return dataclasses.replace(self, **changes)

    def relabel(self, labels: Mapping[str, str]) -> Graph:
        """A copy whose nodes named in ``labels`` show that text instead (names stay)."""
        self._known(labels)
        nodes = [dataclasses.replace(n, label=labels.get(n.name, n.label)) for n in self.nodes]
        return self.replace(nodes=nodes)

    def annotate(
        self,
        nodes: Mapping[str, str] | None = None,
        edges: Mapping[tuple[str, str], str] | None = None,
    ) -> Graph:
        """A copy with notes on some nodes (by name) and edges (by ``(src, dst)``)."""
        nodes, edges = nodes or {}, edges or {}
        self._known(nodes)
        for src, dst in edges:
            self.edge(src, dst)
        return self.replace(
            nodes=[dataclasses.replace(n, note=nodes.get(n.name, n.note)) for n in self.nodes],
            edges=[
                dataclasses.replace(e, note=edges.get((e.src, e.dst), e.note)) for e in self.edges
            ],
        )

    @staticmethod
    def beside(parts: Sequence[tuple[str, Graph]]) -> Graph:
        """One picture of several graphs, one under the other, each with its title.

        The nodes of part ``i`` (counting from 1) are renamed ``"{i}/{name}"``.
        The drawing options are the first part's, except that ``shapes`` and
        ``backward`` hold if any part has them.
        """
        if not parts:
            raise ValueError("beside needs at least one (title, graph) part")
        nodes, edges = [], []
        for i, (_, g) in enumerate(parts, 1):
            nodes += [dataclasses.replace(n, name=f"{i}/{n.name}", group=i) for n in g.nodes]
            edges += [
                dataclasses.replace(e, src=f"{i}/{e.src}", dst=f"{i}/{e.dst}") for e in g.edges
            ]
        graphs = [g for _, g in parts]
        return Graph(
            nodes,
            edges,
            max_elements=graphs[0].max_elements,
            shapes=any(g.shapes for g in graphs),
            backward=any(g.backward for g in graphs),
            titles=tuple(title for title, _ in parts),
        )

    def part(self, i: int) -> Graph:
        """Part ``i`` (from 1) of a picture made by :meth:`beside`, with its own names back."""
        prefix = f"{i}/"
        nodes = [
            dataclasses.replace(n, name=n.name[len(prefix) :], group=0)
            for n in self.nodes
            if n.group == i
        ]
        edges = [
            dataclasses.replace(e, src=e.src[len(prefix) :], dst=e.dst[len(prefix) :])
            for e in self.edges
            if e.src.startswith(prefix)
        ]
        if not nodes:
            raise KeyError(f"no part {i}; this picture has {len(self.titles)}")
        return self.replace(nodes=nodes, edges=edges, titles=())

    def to_dot(self) -> str:
        """The graph in DOT: left to right, value above each arrow, gradient below in red."""
        return _render.to_dot(self)

    def render(self, path: str | os.PathLike) -> Path:
        """Writes the picture to ``path`` (.svg, .png, .dot or .gv); see :func:`.render.render`."""
        return _render.render(self, path)

    def _known(self, names: Mapping[str, str]) -> None:
        unknown = set(names) - {n.name for n in self.nodes}
        if unknown:
            raise KeyError(
                f"no node named {', '.join(sorted(unknown))}; "
                f"the nodes are {', '.join(n.name for n in self.nodes)}"
            )
