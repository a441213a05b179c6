"""The book's ch06/overfit_dropout.py, as ``funcbp experiment dropout``.

Train and test accuracy of 300 digits with and without dropout.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "dropout", *sys.argv[1:]]))
