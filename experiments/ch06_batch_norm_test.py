"""The book's ch06/batch_norm_test.py, as ``funcbp experiment batch-norm``.

Training accuracy with and without batch norm at 16 weight scales.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "batch-norm", *sys.argv[1:]]))
