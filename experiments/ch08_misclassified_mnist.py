"""The book's ch08/misclassified_mnist.py, as ``funcbp experiment misclassified``: DeepConvNet's
first 20 misclassified test digits, with label and prediction.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "misclassified", *sys.argv[1:]]))
