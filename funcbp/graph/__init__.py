"""The computational graph of a function, drawn as chapter 5 draws it.

:func:`trace` reads a function's jaxpr and keeps one node per funcbp layer
call; every edge carries its forward value and its gradient from the layers'
hand-written rules. :meth:`Graph.to_dot` and :meth:`Graph.render` draw it left
to right: forward values above the arrows, gradients below them in red.

- :mod:`funcbp.graph.tracing`: jaxpr -> :class:`Graph`.
- :mod:`funcbp.graph.model`: :class:`Node`, :class:`Edge`, :class:`Graph`.
- :mod:`funcbp.graph.render`: DOT, SVG and PNG.
- :mod:`funcbp.graph.gallery`: the book's networks, ready to trace.

    >>> graph = draw(price, apple, apple_num, tax, path="apple.svg")   # doctest: +SKIP
"""

from funcbp.graph.gallery import EXAMPLES, small_convnet_loss
from funcbp.graph.model import Edge, Graph, Node
from funcbp.graph.render import FORMATS, format_value
from funcbp.graph.tracing import draw, trace

__all__ = [
    "EXAMPLES",
    "FORMATS",
    "Edge",
    "Graph",
    "Node",
    "draw",
    "format_value",
    "small_convnet_loss",
    "trace",
]
