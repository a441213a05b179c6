"""Run folders: one writer each; --out is checked before a run; a damaged or edited
checkpoint is refused in one line."""

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from funcbp import runs
from funcbp.config import TrainConfig, make_optimizer, resolve
from funcbp.runs import RunError
from funcbp.steps import TrainState, init_train_state, run_keys

CONFIG = TrainConfig(iters=50)
RECORD = {
    "history": [{"iter": 20, "epoch": 1.0, "loss": 0.5, "train_acc": 0.9}],
    "chunks": [],
    "timing": {"train_s": 1.0},
    "started": "now",
    "diverged": {},
    "data_sha256": {"train": "ab", "test": "cd"},
}


def _state_and_template(config):
    run = resolve(config, 4000)
    net, opt = run.network(), make_optimizer(run.optimizer)
    state = jax.tree.map(np.asarray, init_train_state(net, opt, run_keys(0)))
    return state, jax.eval_shape(lambda k: init_train_state(net, opt, k), run_keys(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A folder holding the checkpoint of a fresh two-layer state at iteration 20."""
    out = tmp_path_factory.mktemp("run")
    state, template = _state_and_template(CONFIG)
    runs.save_checkpoint(out, CONFIG, state, 20, RECORD, np.ones((3, 1), np.float32))
    return out, state, template


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_checkpoint_round_trip(saved):
    out, state, template = saved
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-000000020.npz", "checkpoint.json"]
    ckpt = runs.load_checkpoint(out)
    assert (ckpt.iteration, ckpt.record, ckpt.config) == (20, RECORD, CONFIG)
    np.testing.assert_array_equal(ckpt.pending, np.ones((3, 1)))
    restored = runs.restore_state(ckpt, template)
    assert isinstance(restored, TrainState)
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_the_optimizers_arrays_are_named_by_their_path_in_the_optax_state(tmp_path):
    config = TrainConfig(iters=50, optimizer="adam")
    state, _ = _state_and_template(config)
    runs.save_checkpoint(tmp_path, config, state, 20, RECORD, np.ones((0, 1), np.float32))
    names = set(runs.load_checkpoint(tmp_path).arrays)
    assert {"params/W1", "opt_state/count", "opt_state/hyperparams/learning_rate"} <= names
    assert {"opt_state/hyperparams/beta1", "opt_state/inner_state/0/mu/W1"} <= names
    assert {"opt_state/inner_state/0/nu/b2", "opt_state/inner_state/0/count"} <= names


def test_a_newer_checkpoint_replaces_the_older_arrays(saved, tmp_path):
    out, state, _ = saved
    run = _copy(out, tmp_path / "run")
    runs.save_checkpoint(run, CONFIG, state, 40, RECORD, np.ones((0, 1), np.float32))
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-000000040.npz", "checkpoint.json"]
    assert runs.load_checkpoint(run).iteration == 40


def _truncate(run):
    arrays = next(run.glob("checkpoint-*.npz"))
    arrays.write_bytes(arrays.read_bytes()[:100])


def _edit_json(resign=False, **changes):
    """Edits checkpoint.json; ``resign`` recomputes its hash, as a forger would."""

    def edit(run):
        meta = json.loads((run / "checkpoint.json").read_text())
        for key, value in changes.items():
            if key in ("hidden", "lr", "seed"):
                meta["config"][key] = value
            elif value is None:
                del meta[key]
            else:
                meta[key] = value
        if resign:
            meta.pop("signature", None)
            meta["signature"] = runs._signature(meta)
        (run / "checkpoint.json").write_text(json.dumps(meta))

    return edit


def _rewrite_arrays(run):
    # A valid npz whose sha256 no longer matches: the arrays were swapped.
    arrays = next(run.glob("checkpoint-*.npz"))
    np.savez(arrays, **{"params/W1": np.zeros(3)})


DAMAGE = {
    "no checkpoint": (lambda run: (run / "checkpoint.json").unlink(), "no checkpoint.json there"),
    "empty json": (
        lambda run: (run / "checkpoint.json").write_text(""),
        "is damaged: not valid JSON",
    ),
    "{} json": (
        lambda run: (run / "checkpoint.json").write_text("{}"),
        "is damaged: it lacks format",
    ),
    "random json": (lambda run: (run / "checkpoint.json").write_bytes(os.urandom(64)), "damaged"),
    "deeply nested json": (
        lambda run: (run / "checkpoint.json").write_text("[" * 100_000),
        "is damaged: nested too deeply",
    ),
    "a folder as json": (
        lambda run: ((run / "checkpoint.json").unlink(), (run / "checkpoint.json").mkdir()),
        "is a folder, not a regular file",
    ),
    "format 2": (_edit_json(format=2), "has checkpoint format 2; this funcbp reads format 3"),
    "no config": (_edit_json(config=None), "is damaged: it lacks config"),
    "no signature": (_edit_json(signature=None), "is damaged: it lacks signature"),
    "no record": (_edit_json(chunks=None), "is damaged: it lacks chunks"),
    # Any edit of what decides the run breaks the hash.
    "iteration 20 -> 10": (_edit_json(iteration=10), "does not match the sha256 it records"),
    "iteration true": (_edit_json(iteration=True), "does not match the sha256 it records"),
    "config.lr": (_edit_json(lr=0.5), "does not match the sha256 it records"),
    "config.seed": (_edit_json(seed=7), "does not match the sha256 it records"),
    "history a string": (_edit_json(history="x"), "does not match the sha256 it records"),
    "history []": (_edit_json(history=[]), "does not match the sha256 it records"),
    "timing an int": (_edit_json(timing=3), "does not match the sha256 it records"),
    "data_sha256": (_edit_json(data_sha256={}), "does not match the sha256 it records"),
    # A file whose hash was recomputed is still checked field by field.
    "signed iteration 0": (
        _edit_json(True, iteration=0),
        "iteration 0 is not a positive integer",
    ),
    "signed iteration true": (
        _edit_json(True, iteration=True),
        "iteration True is not a positive integer",
    ),
    "signed history a string": (_edit_json(True, history="x"), "history is str; expected a list"),
    "signed history an int": (_edit_json(True, history=3), "history is int; expected a list"),
    "signed history bad row": (
        _edit_json(True, history=[{"iter": "20", "loss": 1.0}]),
        r"history\[0\] is not a row with an integer iter",
    ),
    "signed history row past the end": (
        _edit_json(True, history=[{"iter": 99, "loss": 1.0}]),
        r"history\[0\] has iter 99 out of order",
    ),
    "signed history string loss": (
        _edit_json(True, history=[{"iter": 20, "loss": "low"}]),
        "holds a value that is not a number",
    ),
    "signed chunks bad row": (_edit_json(True, chunks=[1, 2]), r"chunks\[0\] is not a row"),
    "signed timing a string": (_edit_json(True, timing="x"), "timing is not an object of numbers"),
    "signed timing bad value": (
        _edit_json(True, timing={"train_s": "1"}),
        "timing is not an object of numbers",
    ),
    "signed diverged": (_edit_json(True, diverged={"a": 1}), "diverged is not an object"),
    "signed data_sha256": (_edit_json(True, data_sha256=[]), "data_sha256 is not an object"),
    "signed bad config": (_edit_json(True, lr="fast"), "holds a config that is not valid"),
    "truncated npz": (_truncate, "does not match the sha256"),
    "random npz": (lambda run: next(run.glob("*.npz")).write_bytes(os.urandom(500)), "sha256"),
    "empty npz": (lambda run: next(run.glob("*.npz")).write_bytes(b""), "sha256"),
    "missing npz": (lambda run: next(run.glob("*.npz")).unlink(), "which is not in"),
    "swapped npz": (_rewrite_arrays, "does not match the sha256"),
    "escaping name": (_edit_json(True, arrays="../../etc/passwd"), "which is not in"),
    "arrays a FIFO": (
        lambda run: (next(run.glob("*.npz")).unlink(), os.mkfifo(run / "checkpoint-000000020.npz")),
        "which is not in",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_the_file(saved, tmp_path, damage):
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    hurt, message = damage
    hurt(run)
    with pytest.raises(RunError, match=message) as e:
        runs.load_checkpoint(run)
    assert "\n" not in str(e.value) and str(run) in str(e.value)
    assert "unsafe" not in str(e.value)  # never the advice to load a pickle


def test_a_hand_edited_config_cannot_resume_with_the_old_arrays(saved, tmp_path):
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    _edit_json(True, hidden=[60])(run)  # re-signed, but the arrays still hold a 784-50-10 net
    ckpt = runs.load_checkpoint(run)
    _, template = _state_and_template(ckpt.config)
    with pytest.raises(RunError, match=r"holds params/W1 as float32\[784, 50\], but the config"):
        runs.restore_state(ckpt, template)


def test_a_checkpoint_that_is_not_a_zip_but_matches_its_hash_is_refused(saved, tmp_path):
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    arrays = next(run.glob("*.npz"))
    arrays.write_bytes(b"not a zip at all")
    _edit_json(True, sha256=hashlib.sha256(b"not a zip at all").hexdigest())(run)
    with pytest.raises(RunError, match=f"{arrays} is damaged"):
        runs.load_checkpoint(run)


def test_out_is_checked_and_locked_in_one_step_and_left_as_it_was_if_unused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file; expected a folder"):
        runs.RunFolder.claim(tmp_path / "file", new=True)
    with pytest.raises(RunError, match="is not writable"):
        runs.RunFolder.claim(tmp_path / "file" / "below", new=True)
    with pytest.raises(RunError, match="out: expected a folder, got ''"):
        runs.RunFolder.claim("", new=True)
    if not os.access("/sys", os.W_OK):
        with pytest.raises(RunError, match="is not writable"):
            runs.RunFolder.claim("/sys/funcbp-run", new=True)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    (taken / "checkpoint-000000010.npz").write_text("")
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"already holds files; .*--overwrite"):
        runs.RunFolder.claim(taken, new=True)
    assert sorted(p.name for p in taken.iterdir()) == sorted(
        ["metrics.json", "checkpoint-000000010.npz", "notes.txt"]
    )
    with runs.RunFolder.claim(taken, new=True, overwrite=True):  # checked, not yet changed
        assert (taken / runs.LOCK).read_text() == f"{os.getpid()}\n"
        runs.start_out(taken, overwrite=True)  # the first checkpoint: only funcbp's files go
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    deep = tmp_path / "new" / "deep"
    with runs.RunFolder.claim(deep, new=True) as folder:
        assert folder.path == deep and deep.is_dir()
    assert not (tmp_path / "new").exists()  # nothing written: the folders it made go
    with runs.RunFolder.claim(deep, new=True):
        (deep / "checkpoint.json").write_text("{}")
    assert [p.name for p in deep.iterdir()] == ["checkpoint.json"]  # the lock file goes


def test_a_folder_holding_only_a_stale_lock_counts_as_empty(tmp_path):
    (tmp_path / runs.LOCK).write_text("99999999\n")  # left by a killed run: no lock held
    with runs.RunFolder.claim(tmp_path, new=True):
        assert (tmp_path / runs.LOCK).read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with runs.RunFolder.claim(run, new=True):
        (run / "checkpoint.json").write_text("{}")
        lock = run / runs.LOCK
        for new in (True, False):
            with pytest.raises(RunError) as e:
                runs.RunFolder.claim(run, new=new)
            what = "out" if new else "resume"
            assert str(e.value).startswith(
                f"{what} {run} is in use by funcbp process {os.getpid()} (its lock is {lock}); "
                "wait for it to end"
            )
    with runs.RunFolder.claim(run, new=False):  # free again
        pass
    with pytest.raises(RunError, match=r"no checkpoint\.json there"):
        runs.RunFolder.claim(tmp_path / "nope", new=False)
    assert not (tmp_path / "nope").exists()


def test_the_space_check_refuses_a_full_disk_and_a_read_only_folder(tmp_path, monkeypatch):
    with runs.RunFolder.claim(tmp_path / "run", new=True) as folder:
        folder.check_space(1 << 20)
        with pytest.raises(RunError, match=rf"out {tmp_path / 'run'} has .* free; this needs"):
            folder.check_space(1 << 62)
        real_open = os.open

        def full(path, flags, *args, **kwargs):
            if ".probe." in os.fspath(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", full)
        with pytest.raises(RunError, match=rf"out {tmp_path / 'run'} is not writable: No space"):
            folder.check_space(0)


def test_a_folder_that_refuses_the_lock_file_is_refused_on_resume(saved, tmp_path, monkeypatch):
    # As a read-only folder answers even root; the chmod test below needs a non-root user.
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if os.fspath(path).endswith(runs.LOCK):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunError, match=f"^resume {run} is not writable: Read-only file system$"):
        runs.RunFolder.claim(run, new=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_refused_on_resume(saved, tmp_path):
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    run.chmod(0o500)
    try:
        with pytest.raises(RunError, match=f"resume {run} is not writable"):
            runs.RunFolder.claim(run, new=False)
    finally:
        run.chmod(0o700)


def test_space_needed_counts_two_checkpoints_and_the_params(saved):
    _, state, template = saved
    state_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))
    params = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state.params))
    need = runs.space_needed(template, 100, resuming=False)
    assert 2 * state_bytes + params < need < 2 * state_bytes + params + (2 << 20)
    assert runs.space_needed(template, 100, resuming=True) < need - state_bytes


def test_default_folders_never_collide():
    names = {runs.default_out() for _ in range(50)}
    assert len(names) == 50
    assert all(n.parent == Path("runs") for n in names)


def test_metrics_json_is_strict_json():
    text = runs.dumps_json({"loss": float("nan"), "rows": [1.0, float("inf")], "ok": True})
    assert json.loads(text) == {"loss": None, "rows": [1.0, None], "ok": True}
    assert "NaN" not in text and "Infinity" not in text


def test_a_saved_run_is_evaluated_model_by_model(tmp_path):
    config = TrainConfig(iters=50, lr=(0.1, 0.01))
    run = resolve(config, 4000)
    net, opt = run.network(), make_optimizer(run.optimizer)
    state = init_train_state(net, opt, run_keys(0, 2), models=2)
    metrics = {"config": config.to_dict(), "run": run.to_dict(), "history": []}
    (tmp_path / "metrics.json").write_text(runs.dumps_json(metrics))
    np.savez(tmp_path / "params.npz", **state.params)
    result = runs.evaluate_run(tmp_path)
    assert result["varying"] == ["seed", "lr"]
    assert [(m["seed"], m["lr"]) for m in result["models"]] == [(0, 0.1), (1, 0.01)]
    assert set(result["models"][0]) >= {"train_acc", "train_loss", "test_acc", "test_loss"}
    assert result["final"]["test_acc"]["mean"] == pytest.approx(
        np.mean([m["test_acc"] for m in result["models"]])
    )


# --- one writer per folder, with real processes -------------------------------------

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}
LONG = ["--iters", "100000", "--checkpoint-every", "10", "--quiet"]  # stopped by a kill


def _train(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "funcbp.cli", "train", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _wait(condition, procs, what, timeout=180):
    """Polls for an event (a file a child writes), failing if the children end first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert any(p.poll() is None for p in procs), f"every child ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.02)


def _holder(run):
    try:
        return int((run / runs.LOCK).read_text())
    except (OSError, ValueError):
        return None


def _kill(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_second_train_or_a_resume_of_a_running_folder_is_refused_naming_the_pid(tmp_path):
    run = tmp_path / "s"
    first = _train(*LONG, "--eval-every", "100000", "--out", run)
    try:
        _wait(lambda: (run / "checkpoint.json").exists(), [first], "checkpoint")
        assert _holder(run) == first.pid
        for argv in (["--iters", "40", "--seed", "1", "--out", run], ["--resume", run]):
            second = _train("--quiet", *argv)
            _, err = second.communicate(timeout=300)
            what = "out" if "--out" in argv else "resume"
            assert second.returncode == 2, err
            assert err == (
                f"funcbp train: error: {what} {run} is in use by funcbp process {first.pid} "
                f"(its lock is {run / runs.LOCK}); wait for it to end"
                + (", or choose another folder\n" if what == "out" else "\n")
            )
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        _kill(first)
    assert runs.load_checkpoint(run).iteration >= 10


def _concurrent_resumes_killed(tmp_path, repetitions):
    """Two resumes of one folder at once, each SIGKILLed at a random moment, then the
    folder is checked and resumed to its end, ``repetitions`` times; returns how many held."""
    import random

    from funcbp import train
    from funcbp.config import TrainConfig

    run = tmp_path / "r"
    train.fit(TrainConfig(iters=20, eval_every=20), run, progress=False, log=lambda line: None)
    held = 0
    for rep in range(repetitions):
        rng = random.Random(rep)
        procs = [_train("--resume", run, *LONG) for _ in range(2)]
        try:
            pids = [p.pid for p in procs]
            _wait(lambda pids=pids: _holder(run) in pids, procs, "lock")
            for p in rng.sample(procs, 2):
                time.sleep(rng.uniform(0, 1.5))  # a random moment, not a timing assertion
                p.kill()
        finally:
            _kill(*procs)
        refused = [p for p in procs if p.returncode == 2]
        assert len(refused) <= 1  # never both running; at most one refused
        ckpt = runs.load_checkpoint(run)  # whatever the kill hit, the checkpoint is whole
        done = train.resume(
            run, {"iters": ckpt.iteration + 10}, progress=False, log=lambda line: None
        )
        assert done.metrics["history"][-1]["iter"] == ckpt.iteration + 10
        assert not (run / runs.LOCK).exists()
        held += 1
    return held


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_killed_concurrent_resumes_leave_a_resumable_folder(tmp_path):
    assert _concurrent_resumes_killed(tmp_path, 3) == 3


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    not os.environ.get("FUNCBP_STRESS"),
    reason="about 7 minutes on 2 cores: set FUNCBP_STRESS=1 to run the 20 repetitions",
)
def test_twenty_killed_concurrent_resumes_leave_a_resumable_folder_every_time(tmp_path):
    assert _concurrent_resumes_killed(tmp_path, 20) == 20


# --- finished runs and params files: the weights are checked -------------------------


def _finished(folder, params, *, models=None):
    config = TrainConfig(iters=50)
    run = resolve(config, 4000)
    metrics = {"config": config.to_dict(), "run": run.to_dict(), "history": []}
    if models is not None:
        metrics["models"] = models
    folder.mkdir(exist_ok=True)
    (folder / "metrics.json").write_text(runs.dumps_json(metrics))
    np.savez(folder / "params.npz", **params)
    return folder


def _two_layer_params():
    state, _ = _state_and_template(CONFIG)
    return {k: np.asarray(v) for k, v in state.params.items()}


def _with(name, value):
    return lambda p: {**p, name: value}


def _set(name, index, value):
    def hurt(p):
        a = p[name].copy()
        a[index] = value
        return {**p, name: a}

    return hurt


BAD_WEIGHTS = {
    "nan": (_set("b2", 3, np.nan), r"param 'b2'\[3\] is nan; weights must be finite"),
    "inf": (_set("W1", (2, 5), np.inf), r"param 'W1'\[2, 5\] is inf"),
    "int32": (lambda p: {k: v.astype(np.int32) for k, v in p.items()}, "has dtype int32"),
    "bool": (_with("b1", np.zeros(50, bool)), "'b1' has dtype bool"),
    "uint8": (_with("b1", np.zeros(50, np.uint8)), "'b1' has dtype uint8"),
    "complex": (_with("b1", np.zeros(50, np.complex64)), "'b1' has dtype complex64"),
    "string": (_with("b1", np.array(["1"] * 50)), "params hold numbers"),
    "structured": (_with("b1", np.zeros(50, "f4,f4")), "params hold numbers"),
}


@pytest.mark.parametrize("hurt", BAD_WEIGHTS.values(), ids=BAD_WEIGHTS.keys())
def test_bad_weights_are_refused_by_evaluate_run_and_evaluate_params(tmp_path, hurt):
    damage, message = hurt
    folder = _finished(tmp_path / "run", damage(_two_layer_params()))
    with pytest.raises(RunError, match=message) as e:
        runs.load_run(folder)
    assert "\n" not in str(e.value) and str(folder / "params.npz") in str(e.value)
    with pytest.raises(ValueError, match=message) as e:
        runs.evaluate_params("two-layer", folder / "params.npz")
    assert "\n" not in str(e.value) and str(folder / "params.npz") in str(e.value)


def test_a_model_the_run_records_as_diverged_may_hold_nan(tmp_path):
    params = _set("W1", (0, 0), np.nan)(_two_layer_params())
    folder = _finished(tmp_path / "run", params, models=[{"diverged_at": 3}])
    _, loaded, _ = runs.load_run(folder)
    assert np.isnan(loaded["W1"][0, 0])
    _finished(folder, params, models=[{"diverged_at": None}])
    with pytest.raises(RunError, match=r"'W1'\[0, 0\] is nan"):
        runs.load_run(folder)


METRICS_DAMAGE = {
    "deeply nested": ("[" * 100_000, "is damaged: nested too deeply"),
    "not json": ("{", "is damaged: not valid JSON"),
    "a list": ("[1, 2]", "is damaged"),
    "no run": ('{"config": {}}', "is damaged"),
    "bad config": ('{"config": {"lr": "x"}, "run": {"train_size": 1}}', "is damaged"),
    "models not rows": (None, "is damaged"),
}


@pytest.mark.parametrize("damage", METRICS_DAMAGE.values(), ids=METRICS_DAMAGE.keys())
def test_a_damaged_metrics_json_is_refused_in_one_line(tmp_path, damage):
    text, message = damage
    folder = _finished(tmp_path / "run", _two_layer_params(), models=[3] if text is None else None)
    if text is not None:
        (folder / "metrics.json").write_text(text)
    with pytest.raises(RunError, match=message) as e:
        runs.load_run(folder)
    assert "\n" not in str(e.value) and str(folder / "metrics.json") in str(e.value)
