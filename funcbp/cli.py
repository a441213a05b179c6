"""The ``funcbp`` command: gradcheck, train, evaluate, bench, graph, chapter, experiment.

``main(argv)`` returns the exit status, so tests call it directly. Bad input
gives one line on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

# Only what starts at once: JAX is imported after the signal handlers are in place.
from funcbp.stopping import Stop, supervise

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _emit(obj: object, json_dest: str | None, text: str) -> None:
    """Writes ``obj`` as JSON to a file or stdout (``-``), and ``text`` unless stdout has JSON."""
    from funcbp.io import atomic_write_text

    if json_dest is not None:
        dumped = json.dumps(obj, indent=2) + "\n"
        if json_dest == "-":
            sys.stdout.write(dumped)
        else:
            atomic_write_text(json_dest, dumped)
    if json_dest != "-":
        print(text)


# --- gradcheck --------------------------------------------------------------


_GRADCHECK_DTYPES = ["float64", "float32", "bfloat16", "float16"]


def _add_gradcheck(p: argparse.ArgumentParser) -> None:
    from funcbp.gradcheck import COMPARISONS

    p.add_argument(
        "--table",
        metavar="MODULE:NAME",
        help="check a table of funcbp.Check rows of one's own, e.g. mypkg.mymodule:CHECKS "
        "(the current directory is importable); default: funcbp's own",
    )
    p.add_argument("--dtype", choices=_GRADCHECK_DTYPES, default="float64")
    p.add_argument(
        "--json", metavar="PATH", help="write the report as JSON to PATH, or - for stdout"
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="check only these rows of the table")
    p.add_argument("--seed", type=int, default=0, help="cotangents, directions (default 0)")
    p.add_argument(
        "--mode",
        choices=["auto", "full", "directional"],
        default="auto",
        help="finite differences entry by entry, along random directions, or auto (full "
        "up to 1024 entries)",
    )
    p.add_argument(
        "--skip",
        nargs="+",
        choices=[c for c in COMPARISONS if c != "vs_autodiff"],
        default=[],
        metavar="CHECK",
        help="switch comparisons off: vs_numerical, vmap, jit, cotangents, linearity, second_order",
    )
    p.add_argument(
        "--move-kinks",
        action="store_true",
        help="move inputs at a kink away from it, instead of reporting them",
    )
    p.set_defaults(run=_run_gradcheck)


def _run_gradcheck(args) -> int:
    _check_outputs(args, "json")
    import jax

    jax.config.update("jax_enable_x64", True)
    import funcbp
    from funcbp.checks import load_table, run_checks
    from funcbp.gradcheck import format_report

    switches = {"vs_numerical": "numerical"}
    options = {switches.get(k, k): False for k in args.skip}
    try:
        table = load_table(args.table) if args.table else None
        results = run_checks(
            args.dtype,
            args.only,
            args.seed,
            table=table,
            mode=args.mode,
            kinks="move" if args.move_kinks else "report",
            **options,
        )
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    ok = all(r.ok for r in results)
    report = {
        "funcbp": funcbp.__version__,
        "jax": jax.__version__,
        "table": args.table or "funcbp.checks:CHECKS",
        "ok": ok,
        "dtype": args.dtype,
        "checks": [r.to_dict() for r in results],
    }
    _emit(report, args.json, format_report(results))
    return 0 if ok else 1


# --- train / evaluate ---------------------------------------------------------


def _typed(parse):
    """An argparse type from a config field's parser: its ValueError as argparse's one line."""

    def typed(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    typed.__name__ = getattr(parse, "__name__", "value")
    return typed


def _checkpoint_every(text: str) -> int | float:
    return float(text[:-1]) if text.endswith("s") else int(text)


def _add_train(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from funcbp.config import TrainConfig

    p.argument_default = argparse.SUPPRESS  # what was not given stays out of args
    groups = {
        False: p.add_argument_group("the run (fixed once it starts; --resume refuses changes)"),
        True: p.add_argument_group("how it runs (--resume honours changes)"),
    }
    # One flag per config field, its help and parser from the field's metadata.
    for f in dataclasses.fields(TrainConfig):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        group = groups[bool(meta.get("resumable"))]
        default = "" if f.default is None or f.default is False else f" (default {f.default})"
        if meta["parse"] is None:
            group.add_argument(flag, action="store_true", help=meta["help"])
        else:
            group.add_argument(flag, type=_typed(meta["parse"]), help=meta["help"] + default)
    how = groups[True]
    how.add_argument("--out", help="run folder (default: a new runs/<date>-<time>-<id>)")
    how.add_argument(
        "--overwrite", action="store_true", help="replace the run files in a non-empty --out"
    )
    how.add_argument("--resume", metavar="DIR", help="continue the checkpointed run in DIR")
    how.add_argument(
        "--checkpoint-every",
        type=_typed(_checkpoint_every),
        metavar="N|Ns",
        help="checkpoint every N iterations, or every N seconds (default 60s)",
    )
    how.add_argument(
        "--log-every",
        type=_typed(int),
        metavar="N",
        help="iterations between log lines (default: a tenth of the run)",
    )
    how.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    how.add_argument(
        "--coordinator", metavar="HOST:PORT", help="multi-process: process 0's address"
    )
    how.add_argument(
        "--num-processes", type=_typed(int), metavar="N", help="multi-process: how many"
    )
    how.add_argument("--process-id", type=_typed(int), metavar="I", help="multi-process: this one")
    how.add_argument(
        "--connect-timeout",
        type=_typed(_seconds),
        metavar="S",
        help="multi-process: seconds to wait for every process at the start (default 60)",
    )
    p.set_defaults(run=_run_train)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _run_train(args, stop) -> int:
    import dataclasses

    from funcbp import runs
    from funcbp.config import TrainConfig
    from funcbp.distributed import CONNECT_TIMEOUT_S, initialize
    from funcbp.train import Diverged, Interrupted, fit, resume

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    quiet = getattr(args, "quiet", False)
    options = {
        "checkpoint_every": getattr(args, "checkpoint_every", None),
        "log_every": getattr(args, "log_every", None),
        "progress": not quiet,
        "log": (lambda line: None) if quiet else print,
        "stop": stop,
    }
    if hasattr(args, "resume"):
        for flag in ("out", "overwrite"):
            if hasattr(args, flag):
                raise UsageError(
                    f"--{flag} cannot be used with --resume, which continues in its DIR"
                )
        out = args.resume
    else:
        config = TrainConfig(**given)  # every value checked before any data or device
        out = args.out if hasattr(args, "out") else runs.default_out()
    # Before anything touches a device; the JAX_* environment variables work too.
    multi = (getattr(args, k, None) for k in ("coordinator", "num_processes", "process_id"))
    timeout = getattr(args, "connect_timeout", CONNECT_TIMEOUT_S)
    initialize(*multi, timeout=timeout, prefix="funcbp train")
    try:
        if hasattr(args, "resume"):
            result = resume(out, given, **options)
        else:
            result = fit(config, out, overwrite=getattr(args, "overwrite", False), **options)
    except Interrupted as e:
        print(f"funcbp train: {e}", file=sys.stderr)
        return 128 + int(e.signum)
    except Diverged as e:
        print(f"funcbp train: error: {e}", file=sys.stderr)
        return 1
    print(_final_line(result.metrics, out))
    return 0


def _final_line(metrics: dict, out) -> str:
    from funcbp import summary

    timing, sweep = metrics["timing"], metrics.get("sweep")
    rate = f"{timing['iters_per_s']:,.0f} it/s" if timing["iters_per_s"] else "no training"
    seconds = (
        f"{rate} while training (compile {timing['compile_s']:.1f} s, "
        f"evaluation {timing['eval_s']:.1f} s)"
    )
    accs = summary.lines(metrics["models"], metrics["run"]["varying"], "")[-1]
    if sweep and sweep["ranking"]:
        best = sweep["configurations"][sweep["ranking"][0]]
        values = ", ".join(f"{k} {v:.4g}" for k, v in best["values"].items())
        accs += f"; best: {values} (val acc {best['val_acc']['mean']:.4f})"
    return f"final: {accs}; {seconds}; wrote {out}"


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    from funcbp.zoo import MODELS

    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a funcbp train run folder")
    p.add_argument("--params", metavar="FILE", help="a .npz or .pkl of params, instead of a run")
    p.add_argument("--model", help=f"the model of --params: {', '.join(MODELS)}")
    p.add_argument("--data", help="evaluate on other data (default: the run's, or mnist-5k)")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH, or -")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from funcbp import summary
    from funcbp.runs import evaluate_params, evaluate_run

    _check_outputs(args, "json")
    if (args.run_dir is None) == (args.params is None):
        raise UsageError("give a RUN_DIR or --params FILE (with --model), not both or neither")
    if args.params is not None:
        if args.model is None:
            raise UsageError("--params needs --model, the network the file holds")
        result = evaluate_params(args.model, args.params, args.data or "mnist-5k")
    elif args.model is not None:
        raise UsageError("--model goes with --params; a run folder knows its model")
    else:
        result = evaluate_run(args.run_dir, args.data)
    where = args.run_dir or args.params
    text = "\n".join(summary.lines(result["models"], result["varying"], where))
    _emit(result, args.json, text)
    return 0


# --- bench ------------------------------------------------------------------


def _add_bench(p: argparse.ArgumentParser) -> None:
    from funcbp.bench import MODELS

    p.add_argument(
        "--model", default="two-layer", help=f"the network: {', '.join(MODELS)} (default two-layer)"
    )
    steps = ", ".join(f"{k} {m.steps} ({m.quick_steps} with --quick)" for k, m in MODELS.items())
    p.add_argument("--steps", type=int, help=f"SGD steps per run (default: {steps})")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="a short run, about a minute")
    p.add_argument("--seed", type=int, default=0, help="init and minibatch seed (default 0)")
    p.add_argument(
        "--json", metavar="PATH", help="write the report as JSON to PATH, or - for stdout"
    )
    p.add_argument("--plot", metavar="PATH", help="also draw a bar chart PNG to PATH")
    p.add_argument("--out", metavar="DIR", help="write bench.json and bench.png into DIR")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument(
        "--seeds", type=int, default=8, metavar="K", help="models trained at once (default 8)"
    )
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from pathlib import Path

    from funcbp.bench import format_table, plot_bench, run_bench, settings
    from funcbp.io import check_output_path, check_writable

    # Every setting and output place is checked before the minutes of timing, not after.
    steps = settings(args.model, args.steps, args.rounds, args.seeds, args.quick)
    _check_outputs(args, "json", "plot")
    if args.out is not None:
        check_writable(args.out, "--out")
        for name in ("bench.json", "bench.png"):
            check_output_path(Path(args.out) / name, "--out")

    # With --json - stdout is the JSON alone; progress goes to stderr.
    log = (lambda line: print(line, file=sys.stderr)) if args.json == "-" else print
    report = run_bench(
        steps,
        args.rounds,
        model=args.model,
        seed=args.seed,
        quick=args.quick,
        torch=not args.no_torch,
        seeds=args.seeds,
        log=log,
    )
    table = format_table(report)
    # Files only where asked for: --plot, or --out (bench.json and bench.png there).
    plot = Path(args.out) / "bench.png" if args.out is not None else None
    plot = Path(args.plot) if args.plot is not None else plot
    if plot is not None:
        report["plot"] = str(plot_bench(report, plot))
        table += f"\nwrote {plot}"
    json_dest = str(Path(args.out) / "bench.json") if args.out is not None else None
    json_dest = args.json if args.json is not None else json_dest
    _emit(report, json_dest, table)
    return 0


# --- graph and chapter ---------------------------------------------------------


def _max_elements(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _add_figure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", choices=["en", "ko"], default="en", help="labels' language")
    p.add_argument(
        "--max-elements",
        type=_max_elements,
        metavar="N",
        help="arrays of up to N elements are drawn as their values, larger ones as shape, "
        "mean and std (default 12)",
    )


def _add_graph(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "example",
        metavar="NAME",
        help="a figure of chapter 5 (apple-forward, local-computation, chain-rule, add-node, "
        "mul-node, apple, apple-orange, relu, sigmoid, sigmoid-curve, affine, affine-batch, "
        "softmax-with-loss, softmax-cross-entropy, two-layer) or simple-convnet, small-convnet",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="FILE.svg, .png, .dot or .gv (default: NAME.svg); .svg and .png need "
        "Graphviz's dot or graphviz-pure, without which the .dot is written instead",
    )
    _add_figure_options(p)
    p.set_defaults(run=_run_graph)


def _run_graph(args) -> int:
    from pathlib import Path

    from funcbp.io import check_output_path

    out = Path(args.out if args.out is not None else f"{args.example}.svg")
    check_output_path(out, "--out")
    import jax

    # float64, so the picture shows the book's 220 and 2.2.
    jax.config.update("jax_enable_x64", True)
    from funcbp.chapter5 import DRAWABLE
    from funcbp.graph import FORMATS

    if args.example not in DRAWABLE:
        raise UsageError(f"unknown example {args.example!r}; choose from {', '.join(DRAWABLE)}")
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out {out}: the suffix must be one of {', '.join(FORMATS)}")
    try:
        # Without Graphviz this writes the .dot and says on stderr how to render it.
        (written,) = DRAWABLE[args.example].write(out, args.lang, args.max_elements)
    except ImportError as e:
        print(f"funcbp graph: {args.example} needs a missing module: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"funcbp graph: {e}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


def _add_chapter(p: argparse.ArgumentParser) -> None:
    p.add_argument("chapter", type=int, choices=[5], metavar="CHAPTER", help="5")
    p.add_argument(
        "--out", metavar="DIR", help="folder to write into (default: chapter5, or chapter5-ko)"
    )
    _add_figure_options(p)
    p.set_defaults(run=_run_chapter)


def _run_chapter(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from funcbp.chapter5 import write_chapter

    out = args.out if args.out is not None else ("chapter5" if args.lang == "en" else "chapter5-ko")
    try:
        written = write_chapter(out, args.lang, args.max_elements)
    except RuntimeError as e:
        print(f"funcbp chapter: {e}", file=sys.stderr)
        return 1
    figures = sum(1 for p in written if p.suffix == ".svg")
    print(
        f"wrote {written[-1]} and {figures} figures, each as .svg and .png, in {written[-1].parent}"
    )
    return 0


# --- experiment -------------------------------------------------------------


def _add_experiment(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", nargs="?", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and their scripts")
    p.add_argument("--seeds", type=int, metavar="K", help="models per setting (mean ± std)")
    p.add_argument("--seed", type=int, help="the first seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a small run of seconds, a first look")
    p.add_argument("--data", help="mnist-5k (bundled, default), mnist or a folder of IDX files")
    p.add_argument("--params", metavar="FILE", help="the model's params, e.g. the book's .pkl")
    p.add_argument("--run-dir", metavar="DIR", help="a funcbp train run folder of the model")
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default: runs/NAME/<date>-<time>-<id>)"
    )
    p.add_argument("--resume", metavar="DIR", help="continue the stopped experiment in DIR")
    p.set_defaults(run=_run_experiment)


def _run_experiment(args, stop) -> int:
    from funcbp import experiments
    from funcbp.train import Interrupted

    if args.list:
        print(experiments.listing())
        return 0
    if args.name is None and args.resume is None:
        raise UsageError("give NAME (see --list), or --resume DIR")
    given = {k: getattr(args, k) for k in ("seeds", "seed", "quick", "data", "params", "run_dir")}
    try:
        outcome = experiments.run(args.name, out=args.out, resume=args.resume, stop=stop, **given)
    except Interrupted as e:
        print(f"funcbp experiment: {e}", file=sys.stderr)
        return 128 + int(e.signum)
    for claim in outcome.claims:
        print(claim.line())
    print(f"{outcome.results['settings']['name']}: {outcome.results['seconds']:.1f} s; "
          f"wrote {outcome.out}")  # fmt: skip
    return 0


# --- entry point ------------------------------------------------------------


# name -> (one-line help, description or None, the function that adds its arguments)
_COMMANDS = {
    "gradcheck": (
        "check hand-written backward rules against autodiff and finite differences",
        "Check each row of a table of funcbp.Check rows (funcbp's own, or --table one's own): "
        "the rule against jax.grad of its twin and against finite differences (float64, "
        "directional above 1024 entries), under vmap and jit, its cotangents' shapes and "
        "dtypes, its linearity in dout and its second order. docs/checking.md explains the "
        "report.",
        _add_gradcheck,
    ),
    "train": (
        "train one of the book's networks (default: 784-50-10, SGD lr 0.1, 10,000 iters)",
        "Train on MNIST in a jitted lax.scan loop and write a run folder (metrics.json, "
        "curve.png, params.npz, checkpoint). Unset options take the model's recipe, the "
        "book's own training script for it.",
        _add_train,
    ),
    "evaluate": (
        "train and test accuracy of a saved run, or of a params file such as the book's",
        "Report train and test accuracy (eval mode) of a run folder, or of a params file in "
        "the book's names and shapes: .npz, or .pkl like the book's params.pkl, read without "
        "running any code.",
        _add_evaluate,
    ),
    "bench": (
        "time funcbp's training loop against the book's NumPy code, PyTorch and 8 models",
        "Train one of the book's networks (784-50-10 or SimpleConvNet) with SGD on mnist-5k "
        "from one init and one minibatch schedule: funcbp (manual rules and autodiff), plain "
        "JAX with XLA's convolution (conv nets), the book's NumPy layer classes, PyTorch eager "
        "(when installed) and 8 seeds in one program; report seconds per 10,000 steps (median "
        "of interleaved rounds), speedups, GFLOP/s and the share of a matmul roofline measured "
        "in the same run.",
        _add_bench,
    ),
    "graph": (
        "draw one of the book's computational graphs with its values and gradients",
        None,
        _add_graph,
    ),
    "chapter": (
        "write every figure of chapter 5 (SVG and PNG) with an index page, in English or Korean",
        "Write the chapter's figures, each traced from running code, in the chapter's order, "
        "with index.md: one sentence per figure naming its section and the book's figure "
        "number, and the layers' forward and backward calls of sections 5.4 and 5.7.",
        _add_chapter,
    ),
    "experiment": (
        "run one of the book's experiments of chapters 6 to 8, with its figure and claims",
        "Run one of the book's experiments (ch06 to ch08) as jitted programs over several "
        "seeds; write its figure with mean ± std bands, results.json and one line per claim "
        "saying whether it held on this data.",
        _add_experiment,
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="funcbp",
        description="Backpropagation from Deep Learning from Scratch, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, description, add_arguments) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=description or help_))
    return parser


# The commands that run under supervise; the others handle signals themselves.
_CHECKPOINTED = {"train", "experiment"}  # commands that stop at a checkpoint, told by the Stop
_SUPERVISED = {*_CHECKPOINTED, "evaluate", "gradcheck", "bench", "graph", "chapter"}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``funcbp`` command line; returns the exit status.

    For the commands of ``_SUPERVISED``, SIGINT, SIGTERM and SIGHUP are
    handled from the first line, before JAX is imported: the command runs in a
    worker thread while this one waits and answers them
    (:func:`funcbp.stopping.supervise`). The first signal decides the status,
    128 + its number, and the message is one line; later signals are absorbed,
    up to the process's end. ``funcbp train`` and ``funcbp experiment`` stop at a
    checkpoint; the others stop at once.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    if command not in _SUPERVISED:
        return _command(argv)
    stop = Stop(checkpoints=command in _CHECKPOINTED)
    restore = stop.install()
    try:
        return supervise(lambda: _command(argv, stop), stop, prefix=f"funcbp {command}")
    finally:
        stop.uninstall(restore)


def _check_outputs(args, *flags: str) -> None:
    """Each output file given is one that can be written as meant, before any work."""
    from funcbp.io import check_output_path

    for flag in flags:
        if getattr(args, flag) is not None:
            check_output_path(getattr(args, flag), f"--{flag}")


_PATH_FLAGS = ("out", "json", "plot", "resume", "params", "run_dir", "data", "table")


def _command(argv: list[str], stop: Stop | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for flag in _PATH_FLAGS:  # '' would read as "not given" somewhere; it is refused
            if getattr(args, flag, None) == "":
                raise UsageError(f"--{flag.replace('_', '-')}: expected a path, got ''")
        if args.command in _CHECKPOINTED:
            return args.run(args, stop)
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
