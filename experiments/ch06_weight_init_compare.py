"""The book's ch06/weight_init_compare.py, as ``funcbp experiment init``.

Std 0.01, Xavier and He inits on MNIST, their loss curves.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "init", *sys.argv[1:]]))
