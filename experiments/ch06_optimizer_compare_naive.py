"""The book's ch06/optimizer_compare_naive.py, as ``funcbp experiment optimizer-paths``: SGD,
Momentum, AdaGrad, Adam: 30 steps on x²/20 + y² from (-7, 2).

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "optimizer-paths", *sys.argv[1:]]))
