"""The book's ch08/half_float_network.py, as ``funcbp experiment half-float``: DeepConvNet's test
accuracy in float64, float32, float16 and bfloat16.

Any of the command's flags may follow, e.g. --quick or --seeds 5.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "half-float", *sys.argv[1:]]))
