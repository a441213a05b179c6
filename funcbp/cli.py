"""The ``funcbp`` command: gradcheck, train, evaluate, bench, graph.

``main(argv)`` returns the exit status, so tests call it directly. Bad input
gives one line on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from funcbp.io import atomic_write_text

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _emit(obj: object, json_dest: str | None, text: str) -> None:
    """Writes ``obj`` as JSON to a file or stdout (``-``), and ``text`` unless stdout has JSON."""
    if json_dest:
        dumped = json.dumps(obj, indent=2) + "\n"
        if json_dest == "-":
            sys.stdout.write(dumped)
        else:
            atomic_write_text(json_dest, dumped)
    if json_dest != "-":
        print(text)


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
    report = {"ok": ok, "dtype": args.dtype, "checks": [r.to_dict() for r in results]}
    _emit(report, args.json, _format_gradcheck(results, args.dtype))
    return 0 if ok else 1


def _format_gradcheck(results, dtype: str) -> str:
    width = max(22, *(len(r.name) for r in results))
    header = (
        f"{'check':<{width}} {'argument':<10} {'vs autodiff':>11} {'max rel':>9}  "
        f"{'vs numerical':>12} {'max rel':>9} {'mean abs':>9}  ok"
    )
    lines = [f"funcbp gradcheck ({dtype}): max |manual - other|, per argument", header]
    for r in results:
        for a in r.arguments:
            ad, num = a.manual_vs_autodiff, a.manual_vs_numerical
            lines.append(
                f"{r.name:<{width}} {a.name:<10} {ad.max_abs:>11.2e} {ad.max_rel:>9.2e}  "
                f"{num.max_abs:>12.2e} {num.max_rel:>9.2e} {num.mean_abs:>9.2e}  "
                f"{'yes' if a.ok else 'NO'}"
            )
    failed = [r.name for r in results if not r.ok]
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)


# --- train / evaluate ---------------------------------------------------------


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected widths like 50 or 100,100, got {text!r}"
        ) from None
    if any(h <= 0 for h in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _add_train(sub) -> None:
    from funcbp.net import ACTIVATIONS
    from funcbp.train import GRADS, OPTIMIZERS

    p = sub.add_parser(
        "train",
        help="train the book's network (784-50-10, SGD lr 0.1, batch 100, 10,000 iters)",
        description="Train on MNIST in a jitted lax.scan loop and write a run folder "
        "(metrics.json, curve.png, params.npz, checkpoint).",
    )
    p.add_argument(
        "--data",
        default="mnist-5k",
        help="mnist-5k (bundled, default), mnist (IDX files in $FUNCBP_DATA_DIR or the "
        "cache, downloaded if missing) or a folder holding the four IDX files",
    )
    p.add_argument("--iters", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's book default)")
    p.add_argument("--hidden", type=_hidden_sizes, default=(50,), help="e.g. 50 or 100,100")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="sgd")
    p.add_argument("--grad", choices=GRADS, default="manual")
    p.add_argument("--weight-init-std", default="0.01", help="a number, he or xavier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-every", type=int, help="iterations between evaluations (default: an epoch)"
    )
    p.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue a checkpointed run in DIR")
    p.add_argument(
        "--devices",
        type=int,
        help="data-parallel over N devices (default: every device, as many as divide the batch)",
    )
    p.add_argument(
        "--mesh-axes",
        choices=["explicit", "auto"],
        default="explicit",
        help="the device mesh's axis type (default explicit)",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process: process 0's address")
    p.add_argument("--num-processes", type=int, metavar="N", help="multi-process: how many")
    p.add_argument("--process-id", type=int, metavar="I", help="multi-process: this one, 0..N-1")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="K",
        help="train K models in one program, seeds seed..seed+K-1 (default 1)",
    )
    p.add_argument(
        "--shared-batches",
        action="store_true",
        help="with --seeds: all K models see the same minibatches",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import time
    from pathlib import Path

    from funcbp.distributed import initialize
    from funcbp.train import Interrupted, TrainConfig, load_checkpoint_config, train

    # Before anything touches a device; the JAX_* environment variables work too.
    initialize(args.coordinator, args.num_processes, args.process_id)
    if args.resume:
        out = Path(args.resume)
        config = load_checkpoint_config(out)
        if "--iters" in (args.argv or []):
            config = TrainConfig.from_dict({**config.to_dict(), "iters": args.iters})
    else:
        std = args.weight_init_std
        if std not in ("he", "xavier"):
            std = _positive_float("weight-init-std", std)
        config = TrainConfig(
            data=args.data,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            hidden=args.hidden,
            activation=args.activation,
            optimizer=args.optimizer,
            grad=args.grad,
            weight_init_std=std
            if std in ("he", "xavier")
            else _positive_float("weight-init-std", std),
            seed=args.seed,
            eval_every=args.eval_every,
            devices=args.devices,
            mesh_axes=args.mesh_axes,
        )
        out = Path(args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    log = (lambda line: None) if args.quiet else print
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.shared_batches and args.seeds == 1:
        raise UsageError("--shared-batches needs --seeds K with K > 1")
    if args.seeds > 1:
        if args.resume:
            raise UsageError("--resume is for single-model runs; --seeds runs are not resumable")
        from funcbp.ensemble import train_ensemble

        metrics = train_ensemble(
            config,
            args.seeds,
            shared_batches=args.shared_batches,
            out=out,
            progress=not args.quiet,
            log=log,
        )
        summary = metrics["summary"]
        print(
            f"{args.seeds} models: test acc {summary['test_acc']['mean']:.4f} "
            f"± {summary['test_acc']['std']:.4f}; wrote {out}"
        )
        return 0
    try:
        metrics = train(config, out, resume=bool(args.resume), progress=not args.quiet, log=log)
    except Interrupted as e:
        print(f"funcbp train: {e}", file=sys.stderr)
        return 130
    final, timing = metrics["final"], metrics["timing"]
    print(
        f"final: train acc {final['train_acc']:.4f}, test acc {final['test_acc']:.4f}, "
        f"loss {final['loss']:.4f}; {timing['iters_per_s']:.0f} it/s "
        f"(compile {timing['compile_s']:.1f} s); wrote {out}"
    )
    return 0


def _positive_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--{name} must be a number, he or xavier, got {text!r}") from None
    if not value > 0:
        raise UsageError(f"--{name} must be > 0, got {text}")
    return value


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="report a saved run's train and test accuracy")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", help="evaluate on other data (default: the run's)")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH, or -")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from funcbp.train import evaluate_run

    result = evaluate_run(args.run_dir, args.data)
    train_acc, test_acc = result["train_acc"], result["test_acc"]
    _emit(result, args.json, f"{args.run_dir}: train acc {train_acc:.4f}, test acc {test_acc:.4f}")
    return 0


# --- bench ------------------------------------------------------------------


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time funcbp's training loop against the book's NumPy code, PyTorch and 8 models",
        description="Train 784-50-10 with SGD on mnist-5k from one init and one minibatch "
        "schedule: funcbp (manual rules and autodiff), the book's NumPy layer classes, PyTorch "
        "eager (when installed) and 8 seeds in one program; report seconds per 10,000 steps "
        "(median of interleaved rounds), speedups, GFLOP/s and the share of a matmul roofline "
        "measured in the same run.",
    )
    p.add_argument("--steps", type=int, help="SGD steps per run (default 10000; 300 with --quick)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="a short run, under a minute")
    p.add_argument("--seed", type=int, default=0, help="init and minibatch seed (default 0)")
    p.add_argument(
        "--json", metavar="PATH", help="write the report as JSON to PATH, or - for stdout"
    )
    p.add_argument("--plot", metavar="PATH", help="bar chart PNG (default: bench.png in --out)")
    p.add_argument("--out", metavar="DIR", help="folder for bench.png (default: the current one)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument(
        "--seeds", type=int, default=8, metavar="K", help="models trained at once (default 8)"
    )
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from pathlib import Path

    steps = (300 if args.quick else 10_000) if args.steps is None else args.steps
    if steps <= 0:
        raise UsageError(f"--steps must be > 0, got {steps}")
    if args.rounds <= 0:
        raise UsageError(f"--rounds must be > 0, got {args.rounds}")
    if args.seeds <= 0:
        raise UsageError(f"--seeds must be > 0, got {args.seeds}")
    from funcbp.bench import format_table, plot_bench, run_bench

    # With --json - stdout is the JSON alone; progress goes to stderr.
    log = (lambda line: print(line, file=sys.stderr)) if args.json == "-" else print
    report = run_bench(
        steps,
        args.rounds,
        seed=args.seed,
        quick_roofline=args.quick,
        torch=not args.no_torch,
        seeds=args.seeds,
        log=log,
    )
    plot = Path(args.plot) if args.plot else Path(args.out or ".") / "bench.png"
    report["plot"] = str(plot_bench(report, plot))
    _emit(report, args.json, f"{format_table(report)}\nwrote {plot}")
    return 0


# --- graph ------------------------------------------------------------------


def _add_graph(sub) -> None:
    p = sub.add_parser(
        "graph",
        help="draw one of the book's computational graphs with its values and gradients",
    )
    p.add_argument("example", metavar="EXAMPLE", help="apple, apple-orange or two-layer")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="FILE.svg, .png, .dot or .gv (default: EXAMPLE.svg); .svg and .png need "
        "Graphviz's dot or graphviz-pure, without which the .dot is written instead",
    )
    p.set_defaults(run=_run_graph)


def _run_graph(args) -> int:
    from pathlib import Path

    import jax

    # float64, so the picture shows the book's 220 and 2.2.
    jax.config.update("jax_enable_x64", True)
    from funcbp.graph import EXAMPLES, FORMATS, trace

    if args.example not in EXAMPLES:
        raise UsageError(f"unknown example {args.example!r}; choose from {', '.join(EXAMPLES)}")
    out = Path(args.out or f"{args.example}.svg")
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out {out}: the suffix must be one of {', '.join(FORMATS)}")
    try:
        f, fargs, argnames = EXAMPLES[args.example]()
    except ImportError as e:
        print(f"funcbp graph: {args.example} needs a missing module: {e}", file=sys.stderr)
        return 1
    try:
        # Without Graphviz this writes the .dot and says on stderr how to render it.
        written = trace(f, *fargs, argnames=argnames).render(out)
    except RuntimeError as e:
        print(f"funcbp graph: {e}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


# --- entry point ------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="funcbp",
        description="Backpropagation from Deep Learning from Scratch, ch. 5, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_gradcheck(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_bench(sub)
    _add_graph(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``funcbp`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except (UsageError, ValueError, OSError) as e:
        # DataError is a ValueError; bad values from the layers and config are too.
        if os.environ.get("FUNCBP_DEBUG"):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"funcbp {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"funcbp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
