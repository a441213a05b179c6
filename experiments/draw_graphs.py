"""Draw the computational graphs (the chapter's figures and the book's networks) into a folder.

Each picture shows the forward values above the arrows and the gradients, from
the hand-written backward rules, below them in red. Without Graphviz's ``dot``
or ``graphviz-pure`` the .dot files are written instead. ``funcbp chapter 5``
writes the chapter's figures with an index page.
"""

import argparse
from pathlib import Path

import jax

from funcbp.chapter5 import DRAWABLE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/graphs", help="output folder")
    parser.add_argument("--format", choices=["svg", "png", "dot"], default="svg")
    parser.add_argument("--lang", choices=["en", "ko"], default="en")
    parser.add_argument("--only", nargs="+", choices=list(DRAWABLE), default=list(DRAWABLE))
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # the book's 220 and 2.2
    for name in args.only:
        if args.format == "dot" and DRAWABLE[name].graph is None:
            continue  # a plot has no DOT
        (path,) = DRAWABLE[name].write(Path(args.out) / f"{name}.{args.format}", args.lang)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
