"""Draw the computational graphs (apple, apple-orange, two-layer, small-convnet) into a folder.

Each picture shows the forward values above the arrows and the gradients, from
the hand-written backward rules, below them in red. Without Graphviz's ``dot``
or ``graphviz-pure`` the .dot files are written instead.
"""

import argparse
from pathlib import Path

import jax

from funcbp.graph import EXAMPLES, trace


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/graphs", help="output folder")
    parser.add_argument("--format", choices=["svg", "png", "dot"], default="svg")
    parser.add_argument("--only", nargs="+", choices=list(EXAMPLES), default=list(EXAMPLES))
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # the book's 220 and 2.2
    for name in args.only:
        f, fargs, argnames = EXAMPLES[name]()
        path = trace(f, *fargs, argnames=argnames).render(Path(args.out) / f"{name}.{args.format}")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
