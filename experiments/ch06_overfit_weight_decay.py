"""The book's ch06/overfit_weight_decay.py, as ``funcbp experiment weight-decay``.

Train and test accuracy of 300 digits with and without weight decay.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "weight-decay", *sys.argv[1:]]))
