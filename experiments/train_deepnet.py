"""The book's train_deepnet.py: DeepConvNet, Adam 0.001, 20 epochs, batch 100.

A thin wrapper around ``funcbp train --model deep-convnet``; any of its flags
may be added, e.g. ``python experiments/train_deepnet.py --data mnist``.
"""

import sys

from funcbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--model", "deep-convnet", *sys.argv[1:]]))
