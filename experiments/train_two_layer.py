"""The book's train_neuralnet.py: 784-50-10, SGD lr 0.1, batch 100, 10,000 iterations.

A thin wrapper around ``funcbp train``; any of its flags may be added, e.g.
``python experiments/train_two_layer.py --data mnist --out runs/full-mnist``.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
