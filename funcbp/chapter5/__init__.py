"""Chapter 5 of the book, every figure drawn from running code, in English or Korean.

:data:`FIGURES` holds the chapter's figures in its order, each with its
section and the book's figure numbers; :func:`write_chapter` writes them all
(SVG and PNG) with an index page, as ``funcbp chapter 5 --out DIR`` does, and
``funcbp graph NAME`` draws one (:data:`DRAWABLE` adds the book's networks).

Sections 5.4 and 5.7 are also shown as transcripts of the layers' ``forward``
and ``backward`` calls in the book's order (:mod:`funcbp.chapter5.steps`).
"""

from funcbp.chapter5.book import DRAWABLE, FIGURES, LANGS, Figure, write_chapter

__all__ = ["DRAWABLE", "FIGURES", "LANGS", "Figure", "write_chapter"]
