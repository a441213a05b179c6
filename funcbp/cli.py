"""The ``funcbp`` command: gradcheck, train, evaluate, bench, graph.

``main(argv)`` returns the exit status, so tests call it directly. Bad input
gives one line on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from funcbp.io import atomic_write_text

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _write_json(obj: object, dest: str) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    if dest == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(dest, text)


# --- gradcheck --------------------------------------------------------------


def _add_gradcheck(sub) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check every hand-written backward rule against autodiff and finite differences",
    )
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument(
        "--json", metavar="PATH", help="write the report as JSON to PATH, or - for stdout"
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="check only these rows of the table")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_gradcheck)


def _run_gradcheck(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from funcbp.checks import run_checks

    try:
        results = run_checks(args.dtype, args.only, args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    ok = all(r.ok for r in results)
    if args.json:
        _write_json(
            {"ok": ok, "dtype": args.dtype, "checks": [r.to_dict() for r in results]}, args.json
        )
    if args.json != "-":
        print(_format_gradcheck(results, args.dtype))
    return 0 if ok else 1


def _format_gradcheck(results, dtype: str) -> str:
    header = (
        f"{'check':<22} {'argument':<10} {'vs autodiff':>11} {'max rel':>9}  "
        f"{'vs numerical':>12} {'max rel':>9} {'mean abs':>9}  ok"
    )
    lines = [f"funcbp gradcheck ({dtype}): max |manual - other|, per argument", header]
    for r in results:
        for a in r.arguments:
            ad, num = a.manual_vs_autodiff, a.manual_vs_numerical
            lines.append(
                f"{r.name:<22} {a.name:<10} {ad.max_abs:>11.2e} {ad.max_rel:>9.2e}  "
                f"{num.max_abs:>12.2e} {num.max_rel:>9.2e} {num.mean_abs:>9.2e}  "
                f"{'yes' if a.ok else 'NO'}"
            )
    failed = [r.name for r in results if not r.ok]
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funcbp",
        description="Backpropagation from Deep Learning from Scratch, ch. 5, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_gradcheck(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``funcbp`` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"funcbp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"funcbp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
