"""Benchmark funcbp's training loop against the book's NumPy code and PyTorch.

The same as ``funcbp bench``, with the report kept: bench.png and bench.json go
to --out (default runs/bench). Any ``funcbp bench`` option passes through, e.g.
``python experiments/bench.py --quick``.
"""

import sys
from pathlib import Path

from funcbp.cli import main as funcbp


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in argv:
        argv = ["--out", "runs/bench", *argv]
    if "--json" not in argv:
        out = Path(argv[argv.index("--out") + 1])
        argv = [*argv, "--json", str(out / "bench.json")]
    return funcbp(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
