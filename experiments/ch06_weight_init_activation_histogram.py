"""The book's ch06/weight_init_activation_histogram.py, as ``funcbp experiment init-activations``.

Activations of 5 layers of 100 per init: sigmoid std 1, 0.01, Xavier; ReLU 0.01, Xavier, He.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "init-activations", *sys.argv[1:]]))
