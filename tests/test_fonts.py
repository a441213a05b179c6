"""funcbp.fonts: Korean text is drawn as glyphs, in the PNGs and in matplotlib, not as boxes."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from funcbp import fonts
from funcbp.graph.render import rasterize

KOREAN = "사과 사과 개수 소비세 지불 금액 계산 그래프 순전파 역전파"
# A private-use character: no font has it, so it is drawn as a missing glyph (a box, or nothing).
MISSING = "\ue000"


def _pixels(text: str, family: str = "DejaVu Sans") -> np.ndarray:
    svg = (
        '<svg width="60pt" height="30pt" viewBox="0 0 60 30" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="5" y="22" font-family="{family}" font-size="20">{text}</text></svg>'
    )
    return np.asarray(Image.open(io.BytesIO(rasterize(svg))).convert("L"))


def test_the_fonts_cover_the_korean_labels():
    assert fonts.korean_font().name == "NanumGothic.ttf"
    assert fonts.missing_glyphs(KOREAN) == set()
    assert fonts.missing_glyphs("× −1 ← ∂z/∂t ± ²") == set()  # DejaVu Sans draws what Nanum lacks
    assert fonts.missing_glyphs(f"a{MISSING}") == {MISSING}


def test_hangul_is_drawn_as_glyphs_not_boxes():
    box = _pixels(MISSING)
    glyphs = [_pixels(c) for c in "사과세금"]
    for c, g in zip("사과세금", glyphs, strict=True):
        assert (g < 128).sum() > 20, f"{c} drew nothing"
        assert not np.array_equal(g, box), f"{c} drew the missing-glyph box"
    # Boxes all look alike; four syllables drawn as glyphs do not.
    assert len({g.tobytes() for g in glyphs}) == 4


def test_hangul_width_is_measured_for_the_layout():
    # Graphviz counts each byte of a Hangul letter as a space; the layout needs the real width.
    assert fonts.needs_measuring("사과 개수") and not fonts.needs_measuring("∂z/∂t × −1")
    assert fonts.text_width("사과 개수", 10) == pytest.approx(4 * 9.4 + 2.8, rel=0.1)


def test_matplotlib_draws_korean_with_the_fonts():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def draw():
        fig = Figure()
        fig.text(0.1, 0.5, "지불 금액 −1")
        FigureCanvasAgg(fig).draw()

    with pytest.warns(UserWarning, match="missing from font"):
        draw()  # matplotlib's own DejaVu Sans has no Hangul
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fonts.use_matplotlib_fonts():
            draw()
