"""The funcbp command, called through main(argv) as a user would: one-line errors, no lost work."""

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import funcbp
from funcbp import checks, reference
from funcbp.cli import _parser, main
from tests.test_data import idx_bytes
from tests.test_gradcheck import _leaky_relu_rule

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _exit_status(argv) -> int:
    # argparse's own errors leave by SystemExit; ours return the status.
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _one_line_error(capsys, message: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    return err


# --- gradcheck --------------------------------------------------------------


def test_gradcheck_json_to_stdout(capsys):
    assert main(["gradcheck", "--json", "-", "--only", "softmax_with_loss", "two_layer"]) == 0
    report = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert report["ok"] is True and report["dtype"] == "float64"
    assert report["funcbp"] == funcbp.__version__ and report["jax"] == jax.__version__
    assert [c["name"] for c in report["checks"]] == ["softmax_with_loss", "two_layer"]
    for c in report["checks"]:
        assert c["ok"] is True and c["failed"] == []
        assert set(c["comparisons"]["vs_autodiff"]) >= {"max_abs", "max_rel", "tolerance"}
        assert c["comparisons"]["vs_numerical"]["max_rel"] < 1e-4
        assert {"h", "mode", "seed", "dtype_policy"} <= set(c["settings"])
    assert [a["name"] for a in report["checks"][1]["arguments"]] == ["W1", "W2", "b1", "b2", "x"]


def test_gradcheck_float32_table_and_json_file(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["gradcheck", "--dtype", "float32", "--json", str(out), "--only", "affine"]) == 0
    table = capsys.readouterr().out
    assert "affine" in table and "W" in table and "1/1 checks passed" in table
    report = json.loads(out.read_text())
    assert report["dtype"] == "float32" and report["checks"][0]["dtype"] == "float32"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_gradcheck_exits_1_when_a_rule_is_wrong(monkeypatch, capsys):
    broken = checks.Check(
        "leaky", _leaky_relu_rule, reference.relu, checks.LAYER_CHECKS[2].make_args
    )
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS[:1], broken))
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "failed: leaky" in out and "NO" in out


def test_gradcheck_unknown_name_is_one_line(capsys):
    assert main(["gradcheck", "--only", "nope"]) == 2
    _one_line_error(capsys, "names must be among")


def test_unknown_dtype_is_rejected_by_argparse(capsys):
    assert _exit_status(["gradcheck", "--dtype", "int8"]) == 2
    assert "invalid choice: 'int8'" in capsys.readouterr().err


_USER_LAYER = """
import jax
import jax.numpy as jnp

import funcbp


@jax.custom_vjp
def tanh(x):
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, dout):
    return ({dx},)


tanh.defvjp(_tanh_fwd, _tanh_bwd)


def _args(rng, dtype):
    return (jnp.asarray(rng.standard_normal((3, 4)), dtype),)


CHECKS = [funcbp.Check("tanh", tanh, jnp.tanh, _args)]
"""


@pytest.mark.parametrize(("dx", "status"), [("dout * (1 - y**2)", 0), ("1 - y**2", 1)])
def test_gradcheck_runs_a_table_of_ones_own(tmp_path, monkeypatch, capsys, dx, status):
    module = f"user_layers_{status}"
    (tmp_path / f"{module}.py").write_text(_USER_LAYER.format(dx=dx))
    monkeypatch.chdir(tmp_path)  # importable from the current directory, as with python -m
    out = tmp_path / "report.json"
    argv = ["gradcheck", "--table", f"{module}:CHECKS", "--dtype", "float32", "--json", str(out)]
    assert main([*argv, "--only", "tanh"]) == status
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["table"] == f"{module}:CHECKS" and report["checks"][0]["dtype"] == "float32"
    if status:  # the rule ignores dout
        assert "failed: tanh" in table and "tanh x: vs_autodiff FAILED" in table
        assert report["checks"][0]["failed"] == [
            "vs_autodiff",
            "vs_numerical",
            "linearity",
            "second_order",
        ]
    else:
        assert "1/1 checks passed" in table and report["ok"] is True


def test_gradcheck_bad_table_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["gradcheck", "--table", "no_module_here:CHECKS"]) == 2
    _one_line_error(capsys, "--table no_module_here:CHECKS: importing no_module_here raised")
    assert main(["gradcheck", "--table", "funcbp.layers:relu"]) == 2
    _one_line_error(capsys, "must be a sequence of funcbp.Check rows, got _custom_vjp")


# --- train: bad input ---------------------------------------------------------------


def _idx_folder(folder, train_shape=(28, 28), test_shape=(28, 28)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (200, *train_shape), np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 200).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (50, *test_shape), np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 50).astype(np.uint8),
    }
    for name, array in arrays.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return folder


BAD_TRAIN = [
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lr", "-0.5"], "lr must be a finite number > 0"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--lr=nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["--lr", "log:1e-6"], "argument --lr: expected log:LOW:HIGH or uniform:LOW:HIGH"),
    (["--weight-init-std", "inf"], "weight_init_std must be a positive finite number"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--batch-size", "x"], "argument --batch-size: expected an integer, got 'x'"),
    (["--batch-size", "4001"], "batch_size must be at most the training set's size 4000"),
    (["--optimizer", "lbfgs"], "optimizer must be one of sgd, momentum"),
    (["--model", "two-layer,multi-layer"], "model does not vary within a run"),
    (["--momentum", "0.5"], "momentum applies to optimizer momentum and nesterov, not sgd"),
    (["--hidden", "0"], "hidden_size and output_size must be positive integers"),
    (["--hidden", "50,,"], "argument --hidden: expected widths like 50 or 100,100"),
    (["--hidden", "50,50"], "hidden must be one width for two-layer (use model multi-layer"),
    (["--hidden", "50000000"], "the model does not fit: 39,750,000,010 parameters"),
    (["--dropout", "0.5"], "dropout applies to multi-layer, not two-layer"),
    (["--compute-dtype", "float16"], "float16 is refused for the loss and its gradients"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
    (["--data-size", "5000"], "data_size must be at most the training set's size 4000"),
    (["--validation", "1.5"], r"validation must be a fraction in (0, 1)"),
    (["--iters", "0"], "iters must be an integer >= 1, got 0"),
    (["--iters", "5", "--epochs", "2"], "iters and epochs both set the length"),
    (["--seeds", "0"], "seeds must be an integer >= 1"),
    (["--seed", "99999999999999999999"], r"seed must be an integer in [0, 4294967295]"),
    (["--seed", "4294967296"], "seed must be an integer in [0, 4294967295], got 4294967296"),
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["--shared-batches"], "shared_batches needs several models"),
    (["--trials", "3", "--lr", "0.1,0.01"], "trials draws each value from a range"),
    (["--lr", "log:1e-6:1e-2"], "lr is a range (log:LOW:HIGH); trials says how many"),
    (["--grad", "numerical"], "grad must be one of manual, backprop, autodiff"),
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive number, got 0"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_train_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert _exit_status(["train", "--quiet", "--out", str(out), *argv]) == 2
    _one_line_error(capsys, message)
    assert not out.exists()


def test_resuming_a_folder_without_a_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["train", "--quiet", "--resume", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "no checkpoint.json there")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("shape", [(20, 20), (14, 56)])
def test_images_of_another_size_are_refused_before_training(shape, tmp_path, capsys):
    folder = _idx_folder(tmp_path / "data", test_shape=shape)
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(folder), "--out", str(out)]) == 2
    _one_line_error(capsys, f"the test images are {shape[0]}x{shape[1]}; the models take 28x28")
    assert not out.exists()


def test_a_corrupt_idx_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (folder / name).write_bytes(b"\x00\x00\x08\x03garbage")
    assert main(["train", "--quiet", "--data", str(folder), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "train-images-idx3-ubyte")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """``funcbp train --iters 120 --eval-every 40``: a finished run."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert (
        main(["train", "--quiet", "--iters", "120", "--eval-every", "40", "--out", str(out)]) == 0
    )
    return out


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


OUT_CASES = {
    "a file": lambda tmp, run: (tmp / "file").write_text("x") and tmp / "file",
    "below a file": lambda tmp, run: (tmp / "f").write_text("x") and tmp / "f" / "run",
    "an existing run": lambda tmp, run: run,
}
OUT_ERRORS = {
    "a file": "is a file; expected a folder",
    "below a file": "is not writable",
    "an existing run": "already holds files; choose a new folder, resume it with --resume",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", OUT_CASES)
def test_out_is_refused_before_anything_runs(case, finished, tmp_path, capsys):
    out = OUT_CASES[case](tmp_path, finished)
    before = _snapshot(finished)
    t0 = time.perf_counter()
    assert main(["train", "--quiet", "--out", str(out)]) == 2
    assert time.perf_counter() - t0 < 30  # refused at once, not after 10,000 iterations
    _one_line_error(capsys, OUT_ERRORS[case])
    assert _snapshot(finished) == before


@pytest.mark.slow
def test_overwrite_replaces_a_run(finished, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert main(["train", "--quiet", "--iters", "8", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "metrics.json").read_text())["config"]["iters"] == 8


# --- train: resume ----------------------------------------------------------------------


@pytest.mark.slow
def test_resume_continues_refuses_fewer_iterations_and_never_duplicates_history(tmp_path, capsys):
    run = tmp_path / "rr"
    assert (
        main(["train", "--quiet", "--iters", "120", "--eval-every", "40", "--out", str(run)]) == 0
    )
    done = _snapshot(run)
    assert main(["train", "--quiet", "--resume", str(run), "--iters", "40"]) == 2
    _one_line_error(capsys, "iters 40 is fewer than the 120 iterations already done")
    assert _snapshot(run) == done
    assert main(["train", "--quiet", "--resume", str(run), "--iters=200"]) == 0  # equals form
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["iter"] for h in history] == [40, 80, 120, 160, 200]
    straight = tmp_path / "straight"
    assert (
        main(["train", "--quiet", "--iters", "200", "--eval-every", "40", "--out", str(straight)])
        == 0
    )
    a, b = np.load(run / "params.npz"), np.load(straight / "params.npz")
    for k in b.files:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0.5"], "lr cannot change on resume (the run has 0.1, got 0.5)"),
        (["--optimizer=adam"], "optimizer cannot change on resume (the run has sgd, got adam)"),
        (["--batch-size", "50"], "batch_size cannot change on resume"),
        (["--seeds", "2"], "seeds cannot change on resume"),
        (["--out", "elsewhere"], "--out cannot be used with --resume"),
        (["--overwrite"], "--overwrite cannot be used with --resume"),
    ],
)
def test_resume_refuses_what_would_change_the_run(argv, message, finished, capsys):
    before = _snapshot(finished)
    assert main(["train", "--quiet", "--resume", str(finished), *argv]) == 2
    _one_line_error(capsys, message)
    assert _snapshot(finished) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hurt", "message"),
    [
        (lambda run: (run / "checkpoint.json").write_text("{}"), "is damaged: it lacks format"),
        (lambda run: next(run.glob("checkpoint-*.npz")).write_bytes(b""), "sha256"),
        (lambda run: (run / "params.npz").write_bytes(os.urandom(100)), None),
    ],
    ids=["{} checkpoint.json", "empty arrays", "random params.npz"],
)
def test_damaged_files_are_one_line(hurt, message, finished, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in _snapshot(finished).items():
        (run / name).write_bytes(data)
    hurt(run)
    if message is None:  # params.npz: evaluate reads it
        assert main(["evaluate", str(run)]) == 2
        _one_line_error(capsys, f"{run / 'params.npz'}: not a readable .npz file (damaged")
    else:
        assert main(["train", "--quiet", "--resume", str(run), "--iters", "160"]) == 2
        _one_line_error(capsys, message)


def _train_parser():
    parser = _parser()
    return parser, next(
        a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train")
    )


def test_every_config_field_is_a_train_flag_with_the_fields_help():
    import dataclasses

    from funcbp.config import TrainConfig

    _, train = _train_parser()
    flags = {a.option_strings[0]: a for a in train._actions if a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        action = flags["--" + f.name.replace("_", "-")]
        assert action.dest == f.name and action.help.startswith(f.metadata["help"])


def test_every_train_flag_takes_both_forms():
    parser, train = _train_parser()
    samples = {
        "--model": "multi-layer",
        "--data": "mnist-5k",
        "--hidden": "20,10",
        "--optimizer": "adam",
        "--activation": "sigmoid",
        "--weight-init-std": "he",
        "--grad": "backprop",
        "--mesh-axes": "auto",
        "--compute-dtype": "bfloat16",
        "--out": "x",
        "--resume": "x",
        "--coordinator": "h:1",
        "--checkpoint-every": "30s",
        "--dropout": "0.5",
        "--lr": "log:1e-6:1e-2",
        "--validation": "0.2",
    }
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 38
    for action in options:
        flag = action.option_strings[0]
        if action.nargs == 0:  # --quiet and the like take no value
            continue
        value = samples.get(flag, "3")
        spaced = parser.parse_args(["train", flag, value])
        joined = parser.parse_args(["train", f"{flag}={value}"])
        assert vars(spaced) == vars(joined), flag
        assert hasattr(spaced, action.dest), flag


# --- evaluate ----------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_a_run_and_a_k_model_run(finished, tmp_path, capsys):
    assert main(["evaluate", str(finished), "--json", "-"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    metrics = json.loads((finished / "metrics.json").read_text())
    assert evaluated["final"]["test_acc"] == pytest.approx(metrics["final"]["test_acc"])
    seeds = tmp_path / "seeds"
    assert main(["train", "--quiet", "--seeds", "2", "--iters", "40", "--out", str(seeds)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(seeds)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seed 0: train acc") and lines[1].startswith("seed 1: train acc")
    assert "2 models: train acc" in lines[2] and "±" in lines[2]


def test_evaluate_missing_run_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "metrics.json")


# --- the main job's output ------------------------------------------------------


@pytest.mark.slow
def test_the_main_jobs_output_is_a_few_lines(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--iters", "400", "--eval-every", "8", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out.splitlines()
    # At most one log line per tenth of the run, then the final line with one rate.
    assert 2 <= len(stdout) <= 11, stdout
    assert stdout[-1].startswith("final: train acc") and stdout[-1].count("it/s") == 1
    assert stdout[-2].startswith("iter 400/400")


# --- signals and lost work (subprocesses) -----------------------------------------


def _start(argv, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-m", "funcbp.cli", "train", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
    )


def _wait_for_checkpoint(run, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not (run / "checkpoint.json").exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(signum, tmp_path):
    run = tmp_path / "run"
    argv = ["--iters", "3000", "--eval-every", "3000", "--checkpoint-every", "40", "--quiet"]
    proc = _start([*argv, "--out", str(run)], tmp_path)
    _wait_for_checkpoint(run, proc)
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    if signum == signal.SIGKILL:  # no goodbye: the periodic checkpoint is what is left
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signum, err[-2000:]
        assert err.count("\n") == 1 and "--resume" in err and "Traceback" not in err
    stopped_at = json.loads((run / "checkpoint.json").read_text())["iteration"]
    assert 0 < stopped_at < 3000
    assert not (run / "params.npz").exists()
    assert main(["train", "--quiet", "--resume", str(run)]) == 0
    straight = tmp_path / "straight"
    assert main(["train", *argv, "--out", str(straight)]) == 0
    a, b = np.load(run / "params.npz"), np.load(straight / "params.npz")
    for k in b.files:
        np.testing.assert_array_equal(a[k], b[k])


# Each sends the signal from a hook inside the phase it names: the import of JAX, the
# first compile, an evaluation, the final writes. The handlers are in place by then.
HOOKS = {
    "import": """
import builtins
_import = builtins.__import__
def hooked(name, *args, **kwargs):
    if name == "jax" and not SENT:
        SENT.append(os.kill(os.getpid(), SIGNUM))
    return _import(name, *args, **kwargs)
builtins.__import__ = hooked
""",
    "compile": """
import jax
_compile = jax.stages.Lowered.compile
def hooked(self, *args, **kwargs):
    if not SENT:
        SENT.append(os.kill(os.getpid(), SIGNUM))
    return _compile(self, *args, **kwargs)
jax.stages.Lowered.compile = hooked
""",
    "evaluation": """
from funcbp import train
_row = train.RunEvaluator.row
def hooked(self, state, i, *args):
    if i == 40 and not SENT:
        SENT.append(os.kill(os.getpid(), SIGNUM))
    return _row(self, state, i, *args)
train.RunEvaluator.row = hooked
""",
    "final writes": """
from funcbp import runs
_write = runs.write_run
def hooked(*args, **kwargs):
    SENT.append(os.kill(os.getpid(), SIGNUM))
    return _write(*args, **kwargs)
runs.write_run = hooked
""",
}
HOOKED_MAIN = """
import os, signal, sys
SIGNUM, SENT = signal.{name}, []
{hook}
from funcbp.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "signum"),
    [
        ("import", signal.SIGINT),
        ("compile", signal.SIGTERM),
        ("evaluation", signal.SIGINT),
        ("final writes", signal.SIGTERM),
    ],
)
def test_a_signal_in_any_phase_stops_the_run_with_one_line(phase, signum, tmp_path):
    run = tmp_path / "run"
    code = HOOKED_MAIN.format(name=signal.Signals(signum).name, hook=HOOKS[phase])
    argv = ["train", "--iters", "80", "--eval-every", "40", "--quiet", "--out", str(run)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=ENV, timeout=200
    )
    assert proc.returncode == 128 + signum, proc.stderr[-2000:]
    name = signal.Signals(signum).name
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"funcbp train: stopped by {name}")
    if phase == "import":  # nothing had started: no folder
        assert "nothing was written" in proc.stderr and not run.exists()
    elif "every file is in" in proc.stderr:  # the final writes were finished
        assert phase == "final writes" and (run / "metrics.json").is_file()
    elif run.exists():  # whatever was left (final writes past the grace too) is a checkpoint
        assert f"resume with funcbp train --resume {run}" in proc.stderr
        assert main(["train", "--quiet", "--resume", str(run)]) == 0
    assert not [p for p in (run.iterdir() if run.exists() else []) if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_runs_started_together_with_the_default_out_never_share_a_folder(tmp_path):
    procs = [_start(["--iters", "8", "--quiet"], tmp_path) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 4
    for folder in folders:
        assert json.loads((folder / "metrics.json").read_text())["config"]["iters"] == 8


# --- the conv nets and the book's weights -------------------------------------------


@pytest.fixture(scope="module")
def simple_run(tmp_path_factory):
    """``funcbp train --model simple-convnet`` for a few steps."""
    out = tmp_path_factory.mktemp("simple") / "run"
    argv = [
        "train",
        "--quiet",
        "--model",
        "simple-convnet",
        "--iters",
        "20",
        "--eval-every",
        "10",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_a_conv_net_trains_with_its_recipe_and_resumes(simple_run, capsys):
    metrics = json.loads((simple_run / "metrics.json").read_text())
    run = metrics["run"]
    assert (run["model"], run["optimizer"], run["models"][0]["lr"]) == (
        "simple-convnet",
        "adam",
        0.001,
    )
    assert run["eval_samples"] == 1000 and metrics["history"][-1]["iter"] == 20
    with np.load(simple_run / "params.npz") as f:
        assert f["W1"].shape == (30, 1, 5, 5) and f["W2"].shape == (4320, 100)
    assert main(["train", "--quiet", "--resume", str(simple_run), "--iters", "30"]) == 0
    assert main(["train", "--quiet", "--resume", str(simple_run), "--hidden", "60"]) == 2
    _one_line_error(capsys, "hidden applies to two-layer and multi-layer, not simple-convnet")


def test_conv_nets_refuse_the_mlp_options(tmp_path, capsys):
    argv = ["train", "--quiet", "--model", "deep-convnet", "--out", str(tmp_path / "r")]
    assert main([*argv, "--hidden", "50"]) == 2
    _one_line_error(capsys, "hidden applies to two-layer and multi-layer, not deep-convnet")
    assert main([*argv, "--activation", "sigmoid"]) == 2
    _one_line_error(capsys, "activation applies to multi-layer, not deep-convnet")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_evaluate_reads_the_books_pickle_format(simple_run, tmp_path, capsys):
    from tests.test_io import _numpy1_pickle

    with np.load(simple_run / "params.npz") as f:
        params = {k: f[k].astype(np.float64) for k in f.files}  # the book saves float64
    book_file = tmp_path / "params.pkl"
    book_file.write_bytes(_numpy1_pickle(params))
    assert (
        main(["evaluate", "--model", "simple-convnet", "--params", str(book_file), "--json", "-"])
        == 0
    )
    from_pickle = json.loads(capsys.readouterr().out)["final"]
    assert main(["evaluate", str(simple_run), "--json", "-"]) == 0
    from_run = json.loads(capsys.readouterr().out)["final"]
    assert set(from_pickle) == {"train_acc", "train_loss", "test_acc", "test_loss"}
    assert from_pickle == pytest.approx(from_run, abs=1e-3)
    # The wrong model for the file is one line naming both.
    assert main(["evaluate", "--model", "deep-convnet", "--params", str(book_file)]) == 2
    _one_line_error(capsys, "does not fit deep-convnet: params must hold W1, b1")


def test_evaluate_refuses_a_pickle_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "deep_convnet_params.pkl"
    evil.write_bytes(__import__("pickle").dumps({"W1": Evil()}, protocol=4))
    assert main(["evaluate", "--model", "deep-convnet", "--params", str(evil)]) == 2
    _one_line_error(capsys, "refusing the pickle's global 'posix.system'")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give a RUN_DIR or --params FILE"),
        (["--params", "p.pkl"], "--params needs --model"),
        (["run", "--model", "simple-convnet"], "--model goes with --params"),
        (["--model", "simple-convnet", "--params", "p.txt"], "must end in .npz or .pkl"),
    ],
)
def test_evaluate_bad_arguments_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "p.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert _exit_status(["evaluate", *argv]) == 2
    _one_line_error(capsys, message)


# --- bench --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, steps",
    [
        ([], 10_000),
        (["--quick"], 300),
        (["--model", "simple-convnet"], 200),
        (["--model", "simple-convnet", "--quick"], 20),
        (["--model", "simple-convnet", "--steps", "7"], 7),
    ],
)
def test_bench_model_flag_picks_the_model_and_its_default_steps(argv, steps, monkeypatch, capsys):
    from funcbp import bench

    asked = {}

    def fake_run_bench(steps, rounds, *, model, **kwargs):
        asked.update(steps=steps, model=model)
        return {"model": model}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(bench, "format_table", lambda report: f"table of {report['model']}")
    assert main(["bench", *argv]) == 0
    model = argv[argv.index("--model") + 1] if "--model" in argv else "two-layer"
    assert asked == {"steps": steps, "model": model}
    assert capsys.readouterr().out == f"table of {model}\n"


def test_bench_unknown_model_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert _exit_status(["bench", "--model", "deep-convnet", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "model must be one of two-layer, simple-convnet, got 'deep-convnet'")
    assert not list(tmp_path.iterdir())
    assert _exit_status(["bench", "--steps", "0"]) == 2
    _one_line_error(capsys, "steps must be an integer >= 1, got 0")


def test_bench_checks_every_output_place_before_timing(monkeypatch, tmp_path, capsys):
    from funcbp import bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before checking"))
    argv = [
        "bench",
        "--model",
        "simple-convnet",
        "--json",
        "/sys/nope/r.json",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    _one_line_error(capsys, "--json /sys/nope/r.json is not writable")
    assert not list(tmp_path.iterdir())


# --- output paths: written as the user meant, checked before any work ------------------


EMPTY_PATHS = [
    ["train", "--out", ""],
    ["train", "--resume", ""],
    ["evaluate", "--params", "", "--model", "two-layer"],
    ["evaluate", "--params", "p.npz", "--model", "two-layer", "--json", ""],
    ["gradcheck", "--json", ""],
    ["bench", "--json", ""],
    ["bench", "--plot", ""],
    ["bench", "--out", ""],
    ["graph", "relu", "--out", ""],
    ["chapter", "5", "--out", ""],
    ["experiment", "ch06-optimizers", "--out", ""],
]


@pytest.mark.parametrize("argv", EMPTY_PATHS, ids=" ".join)
def test_an_empty_path_is_refused_not_read_as_the_default(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _exit_status(argv) == 2
    flag = argv[argv.index("") - 1]
    _one_line_error(capsys, f"{flag}: expected a path, got ''")
    assert not list(tmp_path.iterdir())  # no runs/<default> and no file


def _refuse_work(monkeypatch):
    from funcbp import bench, checks, runs
    from funcbp.chapter5 import book

    for module, name in [(checks, "run_checks"), (bench, "run_bench"), (runs, "evaluate_params"),
                         (book, "write_chapter")]:  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("worked before checking"))


FOLDER_OUTPUTS = [
    ["gradcheck", "--json", "{d}"],
    ["evaluate", "--params", "p.npz", "--model", "two-layer", "--json", "{d}"],
    ["bench", "--json", "{d}"],
    ["bench", "--plot", "{d}"],
    ["bench", "--out", "{f}"],
    ["graph", "relu", "--out", "{d}"],
    ["chapter", "5", "--out", "{f}"],
]


@pytest.mark.parametrize("argv", FOLDER_OUTPUTS, ids=" ".join)
def test_a_folder_for_a_file_or_a_file_for_a_folder_is_refused_before_any_work(
    argv, tmp_path, monkeypatch, capsys
):
    _refuse_work(monkeypatch)
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("keep")
    argv = [a.format(d=tmp_path / "d", f=tmp_path / "f") for a in argv]
    assert _exit_status(argv) == 2
    _one_line_error(capsys, "expected a f")  # "a file" or "a folder"
    assert (tmp_path / "f").read_text() == "keep" and not list((tmp_path / "d").iterdir())


def test_json_onto_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, capsys):
    (tmp_path / "link.json").symlink_to("target.json")
    argv = ["gradcheck", "--only", "relu", "--json", str(tmp_path / "link.json")]
    assert main(argv) == 0
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "target.json").read_text())["ok"] is True


def test_json_onto_a_fifo_is_streamed_and_the_fifo_stays(tmp_path, capsys):
    import threading

    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert main(["gradcheck", "--only", "relu", "--json", str(fifo)]) == 0
    reader.join(timeout=60)
    assert json.loads(got[0])["ok"] is True
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_json_onto_a_full_device_is_one_line_and_the_device_stays(capsys):
    before = os.stat("/dev/full")
    assert main(["gradcheck", "--only", "relu", "--json", "/dev/full"]) == 2
    _one_line_error(capsys, "cannot write /dev/full")
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


# --- signals at the edges: one line, 128 + the first signal, later ones absorbed ----------

# The child waits in the hooked call, after saying so on stdout, until the test lets it go.
EDGE_MAIN = """
import atexit, os, sys, time
GO = sys.argv[1]
def wait(marker):
    print(marker, flush=True)
    while not os.path.exists(GO):
        time.sleep(0.01)
{hook}
from funcbp.cli import main
status = main(sys.argv[2:])
atexit.register(wait, "EXITING")  # runs first among the exit hooks, JAX's included
sys.exit(status)
"""
EDGE_HOOKS = {
    "gradcheck": "from funcbp import checks\nchecks.run_checks = lambda *a, **k: wait('WORKING')",
    "evaluate": "from funcbp import runs\nruns.evaluate_params = lambda *a, **k: wait('WORKING')",
    "bench": "from funcbp import bench\nbench.run_bench = lambda *a, **k: wait('WORKING')",
    "chapter": "import funcbp.chapter5 as c\nc.write_chapter = lambda *a, **k: wait('WORKING')",
}
EDGE_ARGV = {
    "gradcheck": ["gradcheck"],
    "evaluate": ["evaluate", "--params", "p.npz", "--model", "two-layer"],
    "bench": ["bench", "--quick", "--no-torch"],
    "chapter": ["chapter", "5"],
}


def _edge_child(hook, argv, tmp_path):
    code = EDGE_MAIN.format(hook=hook)
    go = tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(go), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV,
    )  # fmt: skip
    return proc, go


def _wait_for_line(proc, marker):
    return any(line.strip() == marker for line in proc.stdout)  # False: it ended first


def _one_line_status(proc, signum, prefix):
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signum, err[-3000:]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prefix}: stopped by {signal.Signals(signum).name}"), err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("command", EDGE_HOOKS)
def test_every_long_command_stops_on_any_signal_with_one_line(command, signum, tmp_path):
    proc, _ = _edge_child(EDGE_HOOKS[command], EDGE_ARGV[command], tmp_path)
    assert _wait_for_line(proc, "WORKING")
    proc.send_signal(signum)
    _one_line_status(proc, signum, f"funcbp {command}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGHUP, signal.SIGTERM),
    ],
    ids=lambda s: "+".join(signal.Signals(n).name for n in s),
)
def test_the_first_of_two_quick_signals_seen_decides_and_the_second_is_absorbed(signals, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--iters", "3000", "--eval-every", "3000", "--checkpoint-every", "40"]
    proc = _start([*argv[1:], "--quiet", "--out", str(run)], tmp_path)
    _wait_for_checkpoint(run, proc)
    for signum in signals:
        proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    # Two signals pending at once reach the process lowest number first, so either may be
    # the first it sees (test_stopping shows that the first one seen decides); whichever
    # it is gives the status and the line, and the other is absorbed.
    assert proc.returncode in {128 + s for s in signals}, err[-3000:]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    first = signal.Signals(proc.returncode - 128).name
    assert f"stopped by {first}" in err and "--resume" in err
    assert main(["train", "--quiet", "--resume", str(run)]) == 0


FINAL_HOOKS = {
    "final evaluation": "from funcbp import train\n_f = train.RunEvaluator.final\n"
    "def final(self, *a, **k):\n    wait('FINAL')\n    return _f(self, *a, **k)\n"
    "train.RunEvaluator.final = final",
    "final writes": "from funcbp import runs\n_w = runs.write_run\n"
    "def write_run(*a, **k):\n    wait('FINAL')\n    return _w(*a, **k)\n"
    "runs.write_run = write_run",
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", FINAL_HOOKS)
def test_sigterm_at_the_end_then_more_signals_in_the_exit_hooks_is_one_line_and_143(
    phase, tmp_path
):
    run = tmp_path / "run"
    argv = ["train", "--iters", "80", "--eval-every", "40", "--quiet", "--out", str(run)]
    proc, go = _edge_child(FINAL_HOOKS[phase], argv, tmp_path)
    assert _wait_for_line(proc, "FINAL")
    proc.send_signal(signal.SIGTERM)
    go.write_text("")
    # Stopping by itself, the run returns through the exit hooks; signals there are absorbed.
    if _wait_for_line(proc, "EXITING"):
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
    err = _one_line_status(proc, signal.SIGTERM, "funcbp train")
    if "every file is in" in err:  # the writes were finished
        assert (run / "metrics.json").is_file() and (run / "params.npz").is_file()
    else:  # or the last checkpoint was left, and resumes
        assert "--resume" in err
        assert main(["train", "--quiet", "--resume", str(run)]) == 0
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
