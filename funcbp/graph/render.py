"""Drawing a :class:`~funcbp.graph.Graph`: DOT text, then SVG and PNG files.

Left to right as the book draws it: forward values above the arrows, gradients
below them in red, flowing back. Arrays of up to ``max_elements`` elements are
written out (``[[1, -0.5], [-2, 3]]``), larger ones as shape, mean and std.

Graphviz (``dot``, or ``graphviz-pure``) lays the picture out as SVG. A PNG is
that SVG rasterized by resvg with funcbp's own fonts (:mod:`funcbp.fonts`),
because Graphviz's bundled fonts have no Hangul: Korean labels would be boxes.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from funcbp import fonts
from funcbp.io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from funcbp.graph.model import Edge, Graph, Node

__all__ = [
    "FORMATS",
    "format_scalar",
    "format_value",
    "rasterize",
    "render",
    "stack_svgs",
    "to_dot",
    "to_dots",
]

# What render writes for each suffix: SVG or PNG, or None for DOT.
FORMATS = {".svg": "svg", ".png": "png", ".dot": None, ".gv": None}
BACK = "#d62728"  # the gradients' colour: the book's backward arrows are red
# DejaVu Sans, as Graphviz knows its metrics exactly and the PNG renderer has it
# (matplotlib ships it); Hangul comes from NanumGothic (see _html).
_FONT, _SIZE, _OP_SIZE, _EDGE_SIZE, _NOTE_SIZE = "DejaVu Sans", 14, 11, 12, 10
_NOTE = "gray25"
# A 2-D array wider than this on one line is written a row per line.
_LINE = 30


# --- values -------------------------------------------------------------------


def format_scalar(x: Any) -> str:
    """6 significant digits: the book's 220 and 3.3 rather than 220.00000000000003."""
    x = np.asarray(x).reshape(())
    if x.dtype == bool:
        return str(bool(x))
    if np.issubdtype(x.dtype, np.integer):
        return str(int(x))
    text = f"{float(x):.6g}"
    return "0" if text == "-0" else text


def format_value(x: Any, max_elements: int = 12, shapes: bool = False) -> str:
    """A value as an arrow's label.

    A scalar as a number; an array of at most ``max_elements`` elements as its
    values, nested like NumPy's (a 2-D array too wide for one line is written
    a row per line); a larger one as its shape, then mean and std (or dtype,
    for integers and booleans). ``shapes`` puts the shape before the values
    too. A PRNG key is written as its kind, ``key<fry>``.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return f"{_shape(x.shape)} {dtype}" if x.ndim else str(dtype)
    x = np.asarray(x)
    if x.ndim == 0:
        return format_scalar(x)
    shape = _shape(x.shape)
    if x.size == 0:
        return f"{shape} empty"
    if x.size <= max_elements:
        values = _nested(x)
        if x.ndim == 2 and x.shape[0] > 1 and len(values) > _LINE:
            values = "[" + ",\n ".join(_nested(row) for row in x) + "]"
        return f"{shape} {values}" if shapes else values
    if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
        return f"{shape} {x.dtype}"
    return f"{shape} mean {np.mean(x):.2g} ±{np.std(x):.2g}"


def _nested(x: np.ndarray) -> str:
    if x.ndim == 0:
        return format_scalar(x)
    return "[" + ", ".join(_nested(row) for row in x) + "]"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


# --- DOT ----------------------------------------------------------------------


def to_dot(graph: Graph) -> str:
    """The graph in DOT: left to right, value above each arrow, gradient below in red.

    A picture of several parts (:meth:`Graph.beside`) is one digraph per part,
    titled, one after the other in the same text.
    """
    return "".join(to_dots(graph))


def to_dots(graph: Graph) -> list[str]:
    """One DOT digraph per part of the picture (one for a plain graph)."""
    groups = sorted({n.group for n in graph.nodes})
    return [_digraph(graph, group) for group in groups]


def _digraph(graph: Graph, group: int) -> str:
    title = graph.titles[group - 1] if 0 < group <= len(graph.titles) else ""
    lines = [
        "digraph funcbp {",
        "  rankdir=LR; ordering=in;",
        "  nodesep=0.3; ranksep=1.0;",
        f'  graph [fontname="{_FONT}", fontsize={_SIZE}];',
        f'  node [fontname="{_FONT}", fontsize={_SIZE}];',
        f'  edge [fontname="{_FONT}", fontsize={_EDGE_SIZE}, arrowsize=0.8];',
    ]
    if title:
        lines.append(f"  label={_label(title, '', _SIZE)}; labelloc=t; labeljust=l;")
    names = {n.name for n in graph.nodes if n.group == group}
    lines += [f"  {_quote(n.name)} [{_node_style(n)}];" for n in graph.nodes if n.name in names]
    for e in graph.edges:
        if e.src in names:
            lines.extend(_edge_lines(e, graph))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain(text: str) -> str:
    """A quoted DOT string; several lines are left-justified (``\\l`` ends each)."""
    if "\n" not in text:
        return _quote(text)
    return _quote(text).replace("\n", "\\l")[:-1] + '\\l"'


def _lines(text: str) -> str:
    lines = [html.escape(line) for line in text.split("\n")]
    return '<BR ALIGN="LEFT"/>'.join(lines) + ('<BR ALIGN="LEFT"/>' if len(lines) > 1 else "")


def _html(rows: list[tuple[str, float, str | None]]) -> str:
    """An HTML-like label of ``(text, size, colour)`` rows, one under the other.

    Graphviz measures text as DejaVu Sans, exactly, but counts each byte of a
    Hangul letter as a space: a row with Hangul goes into a left-aligned cell
    as wide as the PNG renderer draws it.
    """
    rows = [row for row in rows if row[0]]

    def font(text: str, size: float, color: str | None) -> str:
        colour = f' COLOR="{color}"' if color else ""
        return f'<FONT POINT-SIZE="{size:g}"{colour}>{_lines(text)}</FONT>'

    if not any(fonts.needs_measuring(text) for text, _, _ in rows):
        return "<" + "<BR/>".join(font(*row) for row in rows) + ">"
    cells = []
    for text, size, color in rows:
        if fonts.needs_measuring(text):
            width = max(fonts.text_width(line, size) for line in text.split("\n")) + 2
            cells.append(f'<TD WIDTH="{width:.0f}" ALIGN="LEFT">{font(text, size, color)}</TD>')
        else:
            cells.append(f"<TD>{font(text, size, color)}</TD>")
    table = "".join(f"<TR>{cell}</TR>" for cell in cells)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{table}</TABLE>>'


def _label(text: str, note: str, size: float) -> str:
    """``label`` of a node or box: plain text, or HTML when it has a note or Hangul."""
    if not note and not fonts.needs_measuring(text):
        return _quote(text)
    return _html([(text, size, None), (note, _NOTE_SIZE, _NOTE)])


def _node_style(n: Node) -> str:
    label = f"label={_label(n.label, n.note, _OP_SIZE if n.kind == 'op' else _SIZE)}"
    if n.kind in ("input", "output"):
        return f"{label}, shape=plaintext"
    if n.kind == "const":
        return f"{label}, shape=plaintext, fontcolor=gray30, fontsize=11"
    if n.kind == "op":
        # Small and grey: plain JAX, not a layer with a hand-written rule.
        return (
            f"{label}, shape=ellipse, style=dashed, color=gray40, fontcolor=gray30, "
            'fontsize=11, margin="0.04,0.02", height=0.3'
        )
    if len(n.label) == 1 and not n.note:  # the book draws its times and plus nodes as circles
        return f"{label}, shape=circle, fixedsize=true, width=0.5, fontsize=20"
    return f"{label}, shape=box, style=rounded"


def _edge_lines(e: Edge, graph: Graph) -> list[str]:
    """The arrow with its value above it, and its gradient below it in red.

    Dot puts an edge's label beside the edge, never under it, so the gradient
    rides on a transparent twin of the arrow, which dot lays out just below.
    """
    ends = f"{_quote(e.src)} -> {_quote(e.dst)}"
    value = format_value(e.value, graph.max_elements, graph.shapes)
    lines = [f"  {ends} [label={_plain(value)}];"]
    if graph.backward and e.grad is not None:
        grad = "← " + format_value(e.grad, graph.max_elements, graph.shapes)
        text = _html([(grad, _EDGE_SIZE, BACK), (e.note, _NOTE_SIZE, BACK)])
        lines.append(f"  {ends} [label={text}, color=transparent, arrowhead=none];")
    return lines


# --- files ----------------------------------------------------------------------


def render(graph: Graph, path: str | os.PathLike) -> Path:
    """Writes the picture to ``path`` and returns the path written.

    ``.dot``/``.gv`` write DOT. ``.svg`` runs Graphviz's ``dot`` if it is on
    PATH, else ``graphviz-pure`` (``pip install graphviz-pure``); ``.png``
    rasterizes that SVG with resvg and the fonts of :mod:`funcbp.fonts`, so
    Hangul is drawn. A picture of several parts (:meth:`Graph.beside`) is one
    digraph per part, and its SVG the parts' SVGs one under the other. Without
    a Graphviz, the DOT is written beside ``path``
    (same stem, ``.dot``), one line on stderr says how to render it, and that
    ``.dot`` path is returned.

    Raises:
        ValueError: for any other suffix; nothing is written.
        RuntimeError: when the layout or the rasterizer fails.
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt is None:
        return atomic_write_text(path, to_dot(graph))
    program = find_renderer()
    if program is None:
        dot_path = atomic_write_text(path.with_suffix(".dot"), to_dot(graph))
        print(_render_hint(dot_path, path, fmt), file=sys.stderr)
        return dot_path
    svg = stack_svgs([_layout(program, dot, path.name) for dot in to_dots(graph)])
    if fmt == "svg":
        return atomic_write_text(path, svg)
    return atomic_write_bytes(path, rasterize(svg, path.name))


def rasterize(svg: str, name: str = "the picture", zoom: float = 2.0) -> bytes:
    """A PNG of ``svg``, drawn by resvg with funcbp's fonts only, ``zoom`` pixels per point."""
    import resvg_py

    # resvg matches the generic family names case-sensitively; Graphviz writes "sans-Serif".
    svg = svg.replace("sans-Serif", "sans-serif")
    family = fonts.LATIN_FAMILY
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=svg,
            font_files=[str(p) for p in fonts.font_files()],
            skip_system_fonts=True,  # the same pixels on every machine
            font_family=family,
            sans_serif_family=family,
            serif_family=family,
            background="white",
            dpi=72,  # Graphviz writes points; one point is one pixel before the zoom
            zoom=zoom,
        )
    except Exception as e:  # resvg raises ValueError, or a PanicException on a Rust panic
        raise RuntimeError(f"resvg failed on {name}: {e}") from None
    return bytes(png)


def stack_svgs(svgs: list[str]) -> str:
    """Graphviz SVG pictures, one under the other, as one SVG (the first one alone as it is)."""
    if len(svgs) == 1:
        return svgs[0]
    parts, width, height = [], 0.0, 0.0
    for svg in svgs:
        root = re.search(r"<svg\b[^>]*>", svg)
        w, h = (float(re.search(rf'{a}="([\d.]+)pt"', root[0])[1]) for a in ("width", "height"))
        box = re.search(r'viewBox="([^"]+)"', root[0])[1]
        inner = svg[root.end() : svg.rindex("</svg>")]
        parts.append(
            f'<svg x="0" y="{height:g}" width="{w:g}" height="{h:g}" viewBox="{box}">{inner}</svg>'
        )
        width, height = max(width, w), height + h
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<svg width="{width:g}pt" height="{height:g}pt" viewBox="0 0 {width:g} {height:g}" '
        'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{"".join(parts)}\n</svg>\n'
    )


def _layout(program: str, dot: str, name: str) -> str:
    done = subprocess.run([program, "-Tsvg"], input=dot.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{Path(program).name} failed on {name}: {why}")
    return done.stdout.decode()


def _render_hint(dot_path: Path, path: Path, fmt: str) -> str:
    return (
        f"no Graphviz found: wrote {dot_path}; render it with "
        f"`dot -T{fmt} {dot_path} -o {path}` or `pip install graphviz-pure`"
    )


def output_format(path: Path) -> str | None:
    """``svg``, ``png`` or None (DOT) for ``path``'s suffix.

    Raises:
        ValueError: for any other suffix.
    """
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"cannot draw to {path.name!r}: the suffix must be one of {', '.join(FORMATS)}"
        )
    return FORMATS[path.suffix.lower()]


def find_renderer() -> str | None:
    """Graphviz's ``dot`` on PATH, else ``graphviz-pure``, else None."""
    # graphviz-pure lands beside this Python, which need not be on PATH when a
    # virtual environment is used without being activated.
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), sysconfig.get_path("scripts")])
    return shutil.which("dot", path=search) or shutil.which("graphviz-pure", path=search)
