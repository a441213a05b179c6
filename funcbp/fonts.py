"""The fonts funcbp draws text with, so that Korean labels are glyphs, not empty boxes.

Latin text, numbers and symbols are DejaVu Sans, which matplotlib ships and
whose widths Graphviz knows exactly. Hangul is NanumGothic (SIL Open Font
License 1.1, (c) NHN Corporation), which the ``koreanize-matplotlib`` package
ships. That package is found on disk and never imported: importing it changes
matplotlib's global settings and imports ``distutils``.

:func:`font_files` feeds the PNG renderer of :mod:`funcbp.graph`,
:func:`text_width` the layout of Korean labels (Graphviz cannot measure them),
and :func:`use_matplotlib_fonts` makes matplotlib's plots use the same fonts.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "KOREAN_FAMILY",
    "LATIN_FAMILY",
    "font_files",
    "korean_font",
    "missing_glyphs",
    "needs_measuring",
    "text_width",
    "use_matplotlib_fonts",
]

KOREAN_FAMILY = "NanumGothic"
LATIN_FAMILY = "DejaVu Sans"
# Hangul and CJK: Graphviz counts each byte of these letters as a space, far too
# narrow. Latin, Greek and math symbols it measures well enough as Helvetica.
_WIDE = ((0x1100, 0x11FF), (0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))


@functools.cache
def korean_font() -> Path:
    """NanumGothic.ttf inside the installed koreanize-matplotlib package.

    Raises:
        RuntimeError: when the package is not installed.
    """
    spec = importlib.util.find_spec("koreanize_matplotlib")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "fonts" / "NanumGothic.ttf"
        if path.is_file():
            return path
    raise RuntimeError(
        "the Korean font NanumGothic is missing: pip install koreanize-matplotlib "
        "(funcbp depends on it; reinstall funcbp)"
    )


@functools.cache
def _fallback_font() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def font_files() -> list[Path]:
    """The font files for drawing text, first choice first: NanumGothic, then DejaVu Sans."""
    return [korean_font(), _fallback_font()]


@functools.cache
def _metrics(path: Path) -> tuple[dict[int, str], dict[str, tuple[int, int]], int]:
    from fontTools.ttLib import TTFont

    with TTFont(path) as font:
        return font.getBestCmap(), dict(font["hmtx"].metrics), font["head"].unitsPerEm


def missing_glyphs(text: str) -> set[str]:
    """The characters of ``text`` that none of :func:`font_files` can draw."""
    cmaps = [_metrics(path)[0] for path in font_files()]
    return {c for c in text if not c.isspace() and not any(ord(c) in m for m in cmaps)}


def needs_measuring(text: str) -> bool:
    """True for text Graphviz cannot measure (Hangul, CJK): it counts such letters as spaces."""
    return any(low <= ord(c) <= high for c in text for low, high in _WIDE)


def text_width(text: str, size: float) -> float:
    """The width of ``text`` at ``size`` points, in points, as wide as resvg may draw it.

    resvg draws a line in NanumGothic, or the whole line in DejaVu Sans when
    NanumGothic lacks one of its characters (a minus sign), so this is the
    wider of the two ways of taking each glyph from the first font that has it.
    """
    fonts = [_metrics(path) for path in font_files()]
    return max(_advances(text, size, fonts), _advances(text, size, fonts[::-1]))


def _advances(text: str, size: float, fonts: list) -> float:
    width = 0.0
    for c in text:
        for cmap, advances, units in fonts:
            if ord(c) in cmap:
                width += advances[cmap[ord(c)]][0] * size / units
                break
    return width


@contextlib.contextmanager
def use_matplotlib_fonts() -> Iterator[None]:
    """Inside, matplotlib writes text in NanumGothic, each glyph it lacks in DejaVu Sans."""
    import matplotlib
    from matplotlib import font_manager

    names = {f.fname for f in font_manager.fontManager.ttflist}
    if str(korean_font()) not in names:
        font_manager.fontManager.addfont(str(korean_font()))
    with matplotlib.rc_context({"font.family": [KOREAN_FAMILY, "DejaVu Sans"]}):
        yield
