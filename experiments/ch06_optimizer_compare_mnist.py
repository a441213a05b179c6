"""The book's ch06/optimizer_compare_mnist.py, as ``funcbp experiment optimizers``.

SGD, Momentum, AdaGrad and Adam on MNIST, their loss curves.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "optimizers", *sys.argv[1:]]))
