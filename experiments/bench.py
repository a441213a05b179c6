"""Benchmark funcbp's training loop against the book's NumPy code and PyTorch.

The same as ``funcbp bench``, with the report kept: bench.json and bench.png go
to --out (default runs/bench). Any ``funcbp bench`` option passes through, e.g.
``python experiments/bench.py --quick``.
"""

import sys

from funcbp.cli import main as funcbp


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv = ["--out", "runs/bench", *argv]
    return funcbp(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
