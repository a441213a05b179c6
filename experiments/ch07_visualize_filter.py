"""The book's ch07/visualize_filter.py, as ``funcbp experiment filters``: SimpleConvNet's 30 first-
layer filters before and after training.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "filters", *sys.argv[1:]]))
