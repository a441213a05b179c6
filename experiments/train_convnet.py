"""The book's train_convnet.py: SimpleConvNet, Adam 0.001, 20 epochs, batch 100.

A thin wrapper around ``funcbp train --model simple-convnet``; any of its flags
may be added, e.g. ``python experiments/train_convnet.py --data mnist``.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--model", "simple-convnet", *sys.argv[1:]]))
