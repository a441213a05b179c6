"""The book's ch06/hyperparameter_optimization.py, as ``funcbp experiment hyperparameters``.

The random search of lr and weight decay, 100 trials in one program, timed against the book's code.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "hyperparameters", *sys.argv[1:]]))
