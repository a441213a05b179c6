"""Data parallelism through JAX's sharding and jax.distributed, on forced CPU devices.

Each check runs in a subprocess: XLA_FLAGS must be set before jax starts.
"""

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.cases import four_cpu_devices_env

pytestmark = pytest.mark.slow  # every check starts Python processes

FOUR_DEVICES = four_cpu_devices_env(4)
ONE_DEVICE = four_cpu_devices_env(1)  # one CPU device a process


def _run(code: str, env=FOUR_DEVICES, timeout=300) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sharded_step():
    return _run("""
        import json
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from funcbp.distributed import data_parallel_mesh
        from funcbp.zoo import two_layer
        from funcbp.data import load_mnist

        (x, t), _ = load_mnist()
        x, t = x[:100], t[:100]
        params = two_layer.init(jax.random.key(0), weight_init_std="he")
        grad = jax.jit(jax.grad(two_layer.loss))
        single = grad(params, x, t)
        out = {"devices": jax.device_count()}
        for axes in ("explicit", "auto"):
            mesh = data_parallel_mesh(4, axes)
            with jax.set_mesh(mesh):
                xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
                ts = jax.device_put(t, NamedSharding(mesh, P("batch")))
                ps = jax.device_put(params, NamedSharding(mesh, P()))
                g = grad(ps, xs, ts)
            out[axes] = {
                "max_rel": max(float(jnp.max(jnp.abs(g[k] - single[k]))
                               / jnp.max(jnp.abs(single[k]))) for k in g),
                "x_spec": list(xs.sharding.spec),
                "x_shard_rows": xs.addressable_shards[0].data.shape[0],
                "param_spec": list(ps["W1"].sharding.spec),
                "grad_replicated": all(g[k].sharding.is_fully_replicated for k in g),
            }
        print(json.dumps(out))
    """)


@pytest.mark.parametrize("axes", ["explicit", "auto"])
def test_one_sharded_step_gives_the_single_device_gradients(sharded_step, axes):
    r = sharded_step[axes]
    assert sharded_step["devices"] == 4
    assert r["max_rel"] < 1e-6
    assert r["x_spec"] == ["batch"] and r["x_shard_rows"] == 25
    assert r["param_spec"] == []
    assert r["grad_replicated"]


@pytest.fixture(scope="module")
def short_runs():
    return _run("""
        import json
        import jax, numpy as np
        from funcbp.config import TrainConfig
        from funcbp.train import fit

        out = {}
        for name, devices, axes in [("one", 1, "explicit"), ("explicit", 4, "explicit"),
                                    ("auto", 4, "auto")]:
            cfg = TrainConfig(iters=20, eval_every=20, devices=devices, mesh_axes=axes)
            result = fit(cfg, progress=False, log=lambda s: None)
            out[name] = {"params": {k: v.tolist() for k, v in result.params.items()},
                         "loss": result.metrics["final"]["loss"],
                         "devices": result.metrics["devices"]}
        print(json.dumps(out))
    """)


@pytest.mark.parametrize("axes", ["explicit", "auto"])
def test_twenty_sharded_steps_match_twenty_single_device_steps(short_runs, axes):
    one, four = short_runs["one"], short_runs[axes]
    assert (one["devices"], four["devices"]) == (1, 4)
    for k in one["params"]:
        np.testing.assert_allclose(four["params"][k], one["params"][k], atol=1e-4, rtol=0)
    assert four["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_a_full_sharded_run_reaches_the_single_device_accuracy():
    # 50 epochs of mnist-5k: test accuracy has reached its plateau (~0.92).
    # Parameters drift apart over thousands of steps (as two runs whose inits differ
    # by 1e-8 do), so only the accuracy is compared.
    final = _run("""
        import json
        from funcbp.config import TrainConfig
        from funcbp.train import fit
        out = {n: fit(TrainConfig(iters=2_000, eval_every=2_000, devices=n), progress=False,
                      log=lambda s: None).metrics["final"]["test_acc"] for n in (1, 4)}
        print(json.dumps(out))
    """)
    assert final["4"] == pytest.approx(final["1"], abs=0.01)
    assert final["4"] > 0.9


def _cli(*argv):
    proc = subprocess.run(
        [sys.executable, "-m", "funcbp.cli", "train", "--quiet", *argv],
        env=FOUR_DEVICES, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_k_models_train_on_a_mesh_and_resume_on_another_device_count(tmp_path):
    # --seeds gets --devices and resume from the same loop as a single model.
    _cli("--seeds", "2", "--devices", "4", "--iters", "40", "--eval-every", "20",
         "--out", str(tmp_path / "mesh"))  # fmt: skip
    _cli("--seeds", "2", "--devices", "1", "--iters", "40", "--eval-every", "20",
         "--out", str(tmp_path / "one"))  # fmt: skip
    mesh, one = _metrics(tmp_path / "mesh"), _metrics(tmp_path / "one")
    assert (mesh["devices"], one["devices"]) == (4, 1)
    for a, b in zip(mesh["models"], one["models"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # A 4-device run continues on 1 device, and ends where a 1-device run does.
    _cli("--resume", str(tmp_path / "mesh"), "--devices", "1", "--iters", "60")
    _cli("--resume", str(tmp_path / "one"), "--iters", "60")
    resumed, straight = _metrics(tmp_path / "mesh"), _metrics(tmp_path / "one")
    assert resumed["devices"] == 1
    for a, b in zip(resumed["models"], straight["models"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_a_sweep_trains_on_a_mesh_as_on_one_device_and_resumes_on_another_count(tmp_path):
    # Values in the state (lr) and traced into the loss (weight decay), shared batches fused.
    sweep = ["--model", "multi-layer", "--hidden", "20", "--optimizer", "sgd",
             "--lr", "0.1,0.01", "--weight-decay", "0,0.01", "--shared-batches",
             "--eval-every", "20"]  # fmt: skip
    _cli(*sweep, "--iters", "40", "--devices", "4", "--out", str(tmp_path / "mesh"))
    _cli(*sweep, "--iters", "60", "--devices", "1", "--out", str(tmp_path / "one"))
    mesh, one = _metrics(tmp_path / "mesh"), _metrics(tmp_path / "one")
    assert mesh["devices"] == 4 and len(mesh["models"]) == 4
    values = [(m["lr"], m["weight_decay"]) for m in mesh["models"]]
    assert values == [(m["lr"], m["weight_decay"]) for m in one["models"]]
    for a, b in zip(mesh["history"], one["history"][:2], strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    _cli("--resume", str(tmp_path / "mesh"), "--devices", "1", "--iters", "60")
    resumed = _metrics(tmp_path / "mesh")
    for a, b in zip(resumed["models"], one["models"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_cli_devices_4_and_1_end_with_the_same_loss(tmp_path):
    losses = {}
    for n in (4, 1):
        out = tmp_path / f"d{n}"
        proc = subprocess.run(
            [sys.executable, "-m", "funcbp.cli", "train", "--devices", str(n), "--iters", "20",
             "--eval-every", "20", "--quiet", "--out", str(out)],
            env=FOUR_DEVICES, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["devices"] == n and metrics["processes"] == 1
        losses[n] = metrics["final"]["loss"]
    assert losses[4] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("model", ["simple-convnet", "deep-convnet"])
def test_conv_nets_train_on_four_devices_as_on_one(model, tmp_path):
    # JAX's default mesh: jax.make_mesh, Explicit axes.
    iters = {"simple-convnet": 40, "deep-convnet": 4}[model]
    common = ["--model", model, "--iters", str(iters), "--eval-every", str(iters // 2)]
    if model == "deep-convnet":  # its final evaluation of every set is most of its time
        common += ["--data-size", "400"]
    for n in (4, 1):
        _cli(*common, "--devices", str(n), "--out", str(tmp_path / f"d{n}"))
    four, one = _metrics(tmp_path / "d4"), _metrics(tmp_path / "d1")
    assert (four["devices"], one["devices"]) == (4, 1)
    for a, b in zip(four["history"], one["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    if model == "simple-convnet":  # a 4-device run continues on 1 device
        _cli("--resume", str(tmp_path / "d4"), "--devices", "1", "--iters", str(2 * iters))
        assert _metrics(tmp_path / "d4")["history"][-1]["iter"] == 2 * iters


def test_cli_refuses_a_batch_the_devices_cannot_split(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "funcbp.cli", "train", "--devices", "3", "--iters", "20",
         "--quiet", "--out", str(tmp_path / "r")],
        env=FOUR_DEVICES, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "funcbp train: error: batch_size must be divisible by the 3 devices, got 100"
    ]


WORKER = """
import json, sys
import numpy as np
from funcbp.distributed import initialize
initialize(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]))
from funcbp.config import TrainConfig
from funcbp.train import fit
result = fit(TrainConfig(iters=20, eval_every=20), progress=False, log=lambda s: None)
np.savez(sys.argv[3], **result.params)
print(json.dumps({k: result.metrics[k] for k in ("devices", "processes")}))
"""


def test_two_processes_match_each_other_and_a_single_process_run(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = ONE_DEVICE
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(tmp_path / f"p{i}.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results == [{"devices": 2, "processes": 2}] * 2
    single = _run("""
        import json
        from funcbp.config import TrainConfig
        from funcbp.train import fit
        result = fit(TrainConfig(iters=20, eval_every=20, devices=1), progress=False,
                     log=lambda s: None)
        print(json.dumps({k: v.tolist() for k, v in result.params.items()}))
    """, env=env)  # fmt: skip
    p0, p1 = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    for k in single:
        np.testing.assert_array_equal(p0[k], p1[k])
        np.testing.assert_allclose(p0[k], single[k], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("process_id", [0, 1])
def test_a_missing_peer_is_one_line_naming_the_coordinator_within_the_timeout(process_id):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = ONE_DEVICE
    argv = ["train", "--num-processes", "2", "--process-id", str(process_id), "--iters", "4",
            "--coordinator", f"127.0.0.1:{port}", "--connect-timeout", "2"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "funcbp.cli", *argv],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("funcbp train: error: ") and f"127.0.0.1:{port} within 2 s" in line
    assert f"(process {process_id} of 2)" in line and "--coordinator" in line
