"""Reading the numbers back out of a figure's DOT text: what each arrow and box says."""

import html
import re

_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)+)" -> "((?:[^"\\]|\\.)+)" \[label=(.*)\];$', re.M)
_NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)+)" \[label=(.*)\];$', re.M)
_TWIN = ", color=transparent, arrowhead=none"


def _plain(label: str) -> str:
    text = label[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text.replace("\\l", "\n").rstrip("\n")


def _fonts(label: str) -> list[str]:
    texts = re.findall(r"<FONT[^>]*>(.*?)</FONT>", label)
    return [html.unescape(re.sub(r"<BR[^>]*/>", "\n", t)).rstrip("\n") for t in texts]


def dot_edges(dot: str) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    """(src, dst) -> (the value above the arrow, the red gradient below it, its note)."""
    above, below = {}, {}
    for src, dst, rest in _EDGE.findall(dot):
        if rest.endswith(_TWIN):
            texts = _fonts(rest[: -len(_TWIN)])
            below[src, dst] = (texts[0].removeprefix("← "), texts[1] if len(texts) > 1 else None)
        else:
            above[src, dst] = _plain(rest)
    return {edge: (value, *below.get(edge, (None, None))) for edge, value in above.items()}


def dot_nodes(dot: str) -> dict[str, tuple[str, str | None]]:
    """node name -> (its label, its note or None)."""
    nodes = {}
    for name, rest in _NODE.findall(dot):
        label = rest.split(", shape=")[0]
        if label.startswith('"'):
            nodes[name] = (_plain(label), None)
        else:
            texts = _fonts(label)
            nodes[name] = (texts[0], texts[1] if len(texts) > 1 else None)
    return nodes
