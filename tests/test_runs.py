"""Run folders: --out is checked before a run; a damaged checkpoint is refused in one line."""

import json
import os
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from funcbp import runs
from funcbp.config import TrainConfig
from funcbp.runs import RunError
from funcbp.steps import TrainState, init_train_state, run_keys

CONFIG = TrainConfig(iters=50)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A folder holding the checkpoint of a fresh two-layer state at iteration 20."""
    out = tmp_path_factory.mktemp("run")
    net, opt = CONFIG.network, CONFIG.optimizer_fn
    state = jax.tree.map(np.asarray, init_train_state(net, opt, run_keys(0)))
    runs.save_checkpoint(out, CONFIG, state, 20, [{"iter": 20}], {"train_s": 1.0})
    template = jax.eval_shape(lambda k: init_train_state(net, opt, k), run_keys(0))
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
    assert (ckpt.iteration, ckpt.history, ckpt.config) == (20, [{"iter": 20}], CONFIG)
    restored = runs.restore_state(ckpt, template)
    assert isinstance(restored, TrainState)
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_a_newer_checkpoint_replaces_the_older_arrays(saved, tmp_path):
    out, state, _ = saved
    run = _copy(out, tmp_path / "run")
    runs.save_checkpoint(run, CONFIG, state, 40, [], {})
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-000000040.npz", "checkpoint.json"]
    assert runs.load_checkpoint(run).iteration == 40


def _truncate(run):
    arrays = next(run.glob("checkpoint-*.npz"))
    arrays.write_bytes(arrays.read_bytes()[:100])


def _edit_json(**changes):
    def edit(run):
        meta = json.loads((run / "checkpoint.json").read_text())
        for key, value in changes.items():
            if key == "hidden":
                meta["config"]["hidden"] = value
            elif value is None:
                del meta[key]
            else:
                meta[key] = value
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
    "no config": (_edit_json(config=None), "is damaged: it lacks config"),
    "bad iteration": (_edit_json(iteration=10**9), "iteration 1000000000 is not in 1..50"),
    "truncated npz": (_truncate, "does not match the sha256"),
    "random npz": (lambda run: next(run.glob("*.npz")).write_bytes(os.urandom(500)), "sha256"),
    "empty npz": (lambda run: next(run.glob("*.npz")).write_bytes(b""), "sha256"),
    "missing npz": (lambda run: next(run.glob("*.npz")).unlink(), "which is not in"),
    "swapped npz": (_rewrite_arrays, "does not match the sha256"),
    "escaping name": (_edit_json(arrays="../../etc/passwd"), "which is not in"),
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
    _edit_json(hidden=[60])(run)  # the arrays still hold a 784-50-10 net
    ckpt = runs.load_checkpoint(run)
    net, opt = ckpt.config.network, ckpt.config.optimizer_fn
    template = jax.eval_shape(lambda k: init_train_state(net, opt, k), run_keys(0))
    with pytest.raises(RunError, match=r"holds params/W1 as float32\[784, 50\], but the config"):
        runs.restore_state(ckpt, template)


def test_a_checkpoint_that_is_not_a_zip_but_matches_its_hash_is_refused(saved, tmp_path):
    out, _, _ = saved
    run = _copy(out, tmp_path / "run")
    arrays = next(run.glob("*.npz"))
    arrays.write_bytes(b"not a zip at all")
    _edit_json(sha256=__import__("hashlib").sha256(b"not a zip at all").hexdigest())(run)
    with pytest.raises(RunError, match=f"{arrays} is damaged"):
        runs.load_checkpoint(run)
    assert issubclass(zipfile.BadZipFile, Exception)


def test_out_is_checked_before_a_run(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file; expected a folder"):
        runs.prepare_out(tmp_path / "file")
    with pytest.raises(RunError, match="is not writable"):
        runs.prepare_out(tmp_path / "file" / "below")
    if not os.access("/sys", os.W_OK):
        with pytest.raises(RunError, match="is not writable"):
            runs.prepare_out("/sys/funcbp-run")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    (taken / "checkpoint-000000010.npz").write_text("")
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"already holds files; .*--overwrite"):
        runs.prepare_out(taken)
    runs.prepare_out(taken, overwrite=True)  # only funcbp's own files go
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert runs.prepare_out(tmp_path / "new" / "deep").is_dir()


def test_default_folders_never_collide():
    names = {runs.default_out() for _ in range(50)}
    assert len(names) == 50
    assert all(n.parent == Path("runs") for n in names)


def test_metrics_json_is_strict_json():
    text = runs.dumps_json({"loss": float("nan"), "rows": [1.0, float("inf")], "ok": True})
    assert json.loads(text) == {"loss": None, "rows": [1.0, None], "ok": True}
    assert "NaN" not in text and "Infinity" not in text


def test_curves_of_k_models_show_mean_and_band(tmp_path):
    history = [
        {"epoch": e, "train_acc": [0.5, 0.6], "test_acc": [0.4, 0.5], "loss": [1.0, 0.9]}
        for e in (1, 2, 3)
    ]
    runs.plot_curves(tmp_path / "c.png", history, models=2)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
