"""Run folders: --out is checked before a run; a damaged checkpoint is refused in one line."""

import json
import os
import zipfile
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
    "history": [{"iter": 20}],
    "chunks": [],
    "timing": {"train_s": 1.0},
    "started": "now",
    "diverged": {},
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
    "bad iteration": (_edit_json(iteration=0), "iteration 0 is not a positive integer"),
    "no record": (_edit_json(chunks=None), "is damaged: it lacks chunks"),
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
    _, template = _state_and_template(ckpt.config)
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


def test_out_is_checked_before_a_run_and_nothing_is_made_until_the_first_checkpoint(tmp_path):
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
    runs.prepare_out(taken, overwrite=True)  # checked, not yet changed
    assert len(list(taken.iterdir())) == 3
    runs.start_out(taken, overwrite=True)  # the first checkpoint: only funcbp's own files go
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert runs.prepare_out(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()  # checked by writing there, then left as it was
    runs.start_out(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()


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
