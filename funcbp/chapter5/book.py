"""The chapter as a book: its figures in order, and the folder ``funcbp chapter 5`` writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funcbp.chapter5.figures import BUILDERS
from funcbp.chapter5.plots import sigmoid_curve
from funcbp.chapter5.text import LANGS, TEXT, figure_sentence
from funcbp.graph import EXAMPLES, Graph, trace
from funcbp.graph.render import output_format
from funcbp.io import atomic_path

__all__ = ["DRAWABLE", "FIGURES", "LANGS", "Figure", "write_chapter"]


@dataclass(frozen=True)
class Figure:
    """One figure: a traced graph or a matplotlib plot, with where it stands in the book.

    Attributes:
        name: what ``funcbp graph`` calls it: ``sigmoid``.
        section: the book's section: ``5.5.2``.
        book: the book's figure numbers, ``("5-19", "5-20", "5-21", "5-22")``;
            empty for a figure the book does not have.
        graph: ``lang -> Graph``, for a computational graph.
        plot: ``lang -> matplotlib Figure``, for a plot.
    """

    name: str
    section: str
    book: tuple[str, ...]
    graph: Callable[[str], Graph] | None = None
    plot: Callable[[str], Any] | None = None

    def title(self, lang: str = "en") -> str:
        return str(TEXT[lang][self.name]["title"]) if self.name in TEXT[lang] else self.name

    def sentence(self, lang: str = "en") -> str:
        """One sentence naming the section and the book's figure numbers."""
        return figure_sentence(
            lang, self.section, self.book, str(TEXT[lang][self.name]["sentence"])
        )

    def write(
        self,
        paths: str | os.PathLike | list[str | os.PathLike],
        lang: str = "en",
        max_elements: int | None = None,
    ) -> list[Path]:
        """Draws the figure once and writes it to each path: .svg, .png (and .dot, .gv: graphs).

        Returns the paths written (a graph without Graphviz writes ``.dot``
        beside each; see :meth:`funcbp.graph.Graph.render`).

        Raises:
            ValueError: for a bad suffix or language, before anything is drawn.
        """
        _check_lang(lang)
        paths = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
        formats = [output_format(p) for p in paths]
        if self.graph is None and None in formats:
            raise ValueError(f"{self.name} is a plot: draw it to .svg or .png")
        if self.graph is not None:
            graph = self.graph(lang)
            if max_elements is not None:
                graph = graph.replace(max_elements=max_elements)
            return [graph.render(p) for p in paths]
        figure = self.plot(lang)
        for path, fmt in zip(paths, formats, strict=True):
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format=fmt, dpi=150)
        return paths


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")


# (name, section, the book's figure numbers), in the chapter's order.
_CHAPTER = [
    ("apple-forward", "5.1.1", ("5-2",)),
    ("local-computation", "5.1.2", ("5-4",)),
    ("chain-rule", "5.2.3", ("5-7", "5-8")),
    ("add-node", "5.3.1", ("5-11",)),
    ("mul-node", "5.3.2", ("5-13",)),
    ("apple", "5.3.3", ("5-14",)),
    ("apple-orange", "5.3.3", ("5-15",)),
    ("relu", "5.5.1", ("5-18",)),
    ("sigmoid", "5.5.2", ("5-19", "5-20", "5-21", "5-22")),
    ("sigmoid-curve", "5.5.2", ()),
    ("affine", "5.6.1", ("5-24", "5-25")),
    ("affine-batch", "5.6.2", ("5-27",)),
    ("softmax-with-loss", "5.6.3", ("5-29",)),
    ("softmax-cross-entropy", "5.6.3", ("5-30",)),
    ("two-layer", "5.7.2", ("5-28",)),
]
_PLOTS = {"sigmoid-curve": sigmoid_curve}

FIGURES: dict[str, Figure] = {
    name: Figure(name, section, book, graph=BUILDERS.get(name), plot=_PLOTS.get(name))
    for name, section, book in _CHAPTER
}


def _example(name: str) -> Callable[[str], Graph]:
    def build(lang: str) -> Graph:
        f, args, argnames = EXAMPLES[name]()
        return trace(f, *args, argnames=argnames)

    return build


# Everything ``funcbp graph`` draws: the chapter's figures, then the book's other networks.
DRAWABLE: dict[str, Figure] = {
    **FIGURES,
    **{
        name: Figure(name, "", (), graph=_example(name)) for name in EXAMPLES if name not in FIGURES
    },
}


def write_chapter(
    out: str | os.PathLike, lang: str = "en", max_elements: int | None = None
) -> list[Path]:
    """Writes every figure of :data:`FIGURES` as SVG and PNG into ``out``, then ``index.md``.

    The files are numbered in the chapter's order (``09-sigmoid.svg``). The
    index gives each figure one sentence naming its section and the book's
    figure numbers, and the step-by-step transcripts of sections 5.4 and 5.7.

    Returns:
        The paths written, the index last.

    Raises:
        RuntimeError: when no Graphviz can lay the graphs out.
        OSError: when ``out`` cannot be written; checked before any drawing.
    """
    from funcbp.graph.render import find_renderer
    from funcbp.io import atomic_write_text, check_writable

    _check_lang(lang)
    if find_renderer() is None:
        raise RuntimeError("no Graphviz to lay the figures out: pip install graphviz-pure")
    out = check_writable(out, "--out")
    written, files = [], {}
    for i, figure in enumerate(FIGURES.values(), 1):
        stem = f"{i:02d}-{figure.name}"
        written += figure.write([out / f"{stem}.svg", out / f"{stem}.png"], lang, max_elements)
        files[figure.name] = stem
    written.append(atomic_write_text(out / "index.md", index_page(files, lang)))
    return written


def index_page(files: dict[str, str], lang: str = "en") -> str:
    """The Markdown index: per figure its title, one sentence and the PNG, then 5.4 and 5.7."""
    from funcbp.chapter5.steps import apple_layers, two_layer_sweep
    from funcbp.chapter5.text import words

    w = words(lang)
    lines = [f"# {w['heading']}", "", w["intro"], "", w["guide"], ""]
    for name, stem in files.items():
        figure = FIGURES[name]
        lines += [f"## {figure.section} {figure.title(lang)}", "", figure.sentence(lang), ""]
        lines += [f"![{figure.title(lang)}]({stem}.png)", "", f"[SVG]({stem}.svg)", ""]
        if name == "apple-orange":
            lines += [f"## {w['steps_54']}", "", w["steps_54_intro"], ""]
            lines += ["```python", apple_layers(lang), "```", ""]
    lines += [f"## {w['steps_57']}", "", w["steps_57_intro"], ""]
    lines += ["```", two_layer_sweep(lang), "```", ""]
    return "\n".join(lines)
