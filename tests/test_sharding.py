"""Every row of the check table on 4 forced CPU devices, batch-sharded and under shard_map.

- Batch-sharded: each row's batch arguments are sharded over a mesh axis
  ``batch`` of an Explicit mesh (JAX's default for ``jax.make_mesh``) and of an
  Auto one, the others replicated; ``jax.grad`` through the rules, eagerly and
  under ``jit``, equals the one-device gradient in float32.
- shard_map: for every row with parameters (differentiable arguments without
  a batch axis), a data-parallel ``jax.shard_map`` step, parameters ``P()`` and
  data ``P("batch")`` with ``check_vma`` on, gives the same gradients through
  the rules as through the twins (float64).

A row's batch axis is read off its example arguments: the leading axis of its
first array, and of every other array as long. A row whose first array is 1-D
is one example (the book's single-example affine) and has no batch axis.
Batches that 4 devices do not divide are repeated until they do. Each mesh
kind runs in one subprocess
(XLA_FLAGS must be set before jax starts), which checks every row and prints
one JSON report.
"""

import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from funcbp import conv
from funcbp.checks import CHECKS, Check
from tests.cases import four_cpu_devices_env

# Each mesh kind starts a Python process; the first test waits for both (about a
# minute of CPU on 2 cores), so its limit is longer than the suite's.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEVICES = 4
AXES = ("explicit", "auto")
ROOT = Path(__file__).resolve().parents[1]
# Rules against twins in float64: the same sums in another order.
SHARD_MAP_RTOL = 1e-9


# --- what a row's arguments are -------------------------------------------------


def _roles(row, args):
    """Per argument: "batch" (sharded), "param" (differentiated, replicated) or "fixed"."""
    arrays = [a for a in args if hasattr(a, "shape") and getattr(a, "ndim", 0) >= 1]
    n = arrays[0].shape[0] if arrays and arrays[0].ndim >= 2 else None
    diff = row.argnums
    if diff is None:  # every floating argument, as compare_gradients takes them
        diff = tuple(i for i, a in enumerate(args) if _floating(a))
    roles = []
    for i, a in enumerate(args):
        if getattr(a, "ndim", 0) >= 1 and a.shape[0] == n:
            roles.append("batch")
        else:
            roles.append("param" if i in diff else "fixed")
    return tuple(roles), diff


def _floating(tree):
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves)


def _example(row, dtype):
    """The row's arguments, batches repeated until the devices divide them."""
    args = row.make_args(np.random.default_rng(0), dtype)
    roles, diff = _roles(row, args)
    n = next((a.shape[0] for a, r in zip(args, roles, strict=True) if r == "batch"), DEVICES)
    copies = DEVICES // math.gcd(n, DEVICES)
    args = tuple(
        np.concatenate([np.asarray(a)] * copies) if r == "batch" else a
        for a, r in zip(args, roles, strict=True)
    )
    return args, roles, diff


def _rows_with_params():
    return [
        row.name
        for row in CHECKS
        if "param" in _roles(row, row.make_args(np.random.default_rng(0), jnp.float32))[0]
    ]


# --- in the subprocess ----------------------------------------------------------


def _max_rel(got, want):
    """max |got - want| / max |want| over all of a row's gradients.

    Over all of them, not per array: a gradient that is 0 in exact arithmetic (a
    bias before batch norm) is rounding noise on either side.
    """
    pairs = [
        (np.asarray(g, np.float64), np.asarray(w, np.float64))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
        if np.size(w)
    ]
    if not pairs:
        return 0.0
    scale = max(float(np.max(np.abs(w))) for _, w in pairs)
    return max(float(np.max(np.abs(g - w))) for g, w in pairs) / max(scale, 1e-30)


def _scalar(fn, cotangent):
    return lambda *a: jnp.sum(fn(*a) * cotangent)


def _sharded(row, mesh):
    """Max relative difference to one device's gradients, eagerly and under jit."""
    args, roles, diff = _example(row, jnp.float32)
    args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    out = jax.eval_shape(row.manual, *args)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape), out.dtype)
    grad = jax.grad(_scalar(row.manual, cotangent), diff)
    want = jax.jit(grad)(*args)
    results = {}
    with jax.set_mesh(mesh):
        placed = tuple(
            a
            if a is None
            else jax.device_put(a, NamedSharding(mesh, P("batch") if r == "batch" else P()))
            for a, r in zip(args, roles, strict=True)
        )
        cot = jax.device_put(cotangent, NamedSharding(mesh, P()))
        grad = jax.grad(_scalar(row.manual, cot), diff)
        for mode, fn in (("eager", grad), ("jit", jax.jit(grad))):
            try:
                results[mode] = _max_rel(fn(*placed), want)
            except Exception as e:  # reported per row, so one row does not hide the others
                results[mode] = f"{type(e).__name__}: {str(e)[:400]}"
    return results


def _shard_map(row, mesh):
    """Max relative difference, rules to twins, of a data-parallel step's gradients."""
    args, roles, _ = _example(row, jnp.float64)
    params = tuple(a for a, r in zip(args, roles, strict=True) if r == "param")
    data = tuple(a for a, r in zip(args, roles, strict=True) if r == "batch")
    params = jax.device_put(params, NamedSharding(mesh, P()))
    data = jax.device_put(data, NamedSharding(mesh, P("batch")))

    def assemble(params, data):
        p, d = iter(params), iter(data)
        return [
            next(p) if r == "param" else next(d) if r == "batch" else a
            for a, r in zip(args, roles, strict=True)
        ]

    def step(fn):
        def local(params, data):
            out = fn(*assemble(params, data))
            cotangent = jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape)
            # Each shard's loss weighted by its own number: the cotangent into every rule
            # varies over the batch axis, in type and in value.
            weight = (1 + lax.axis_index("batch")).astype(out.dtype)
            return lax.psum(weight * jnp.sum(out * cotangent), "batch")

        def grads(params, data):
            return jax.grad(local)(params, data)

        return jax.jit(jax.shard_map(grads, mesh=mesh, in_specs=(P(), P("batch")), out_specs=P()))

    try:
        got = step(row.manual)(params, data)
    except Exception as e:
        return f"{type(e).__name__}: {str(e)[:400]}"
    want = step(row.reference)(params, data)
    return {"max_rel": _max_rel(got, want), "rtol": SHARD_MAP_RTOL}


def _convolution_without_vma():
    """The convolution row with its rule registered by plain ``defvjp``, bypassing _vma."""
    plain = jax.custom_vjp(conv.convolution.fun, nondiff_argnums=conv.convolution.nondiff_argnums)
    plain.defvjp(conv._convolution_fwd, conv._convolution_bwd)
    row = next(row for row in CHECKS if row.name == "convolution")
    return Check(
        "convolution_without_vma",
        partial(plain, **row.manual.keywords),
        row.reference,
        row.make_args,
    )


def report(axes: str) -> None:
    """Checks every row on a 4-device mesh of ``axes`` and prints the JSON report."""
    kind = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}[axes]
    mesh = jax.make_mesh((DEVICES,), ("batch",), axis_types=(kind,))
    out = {"devices": jax.device_count(), "sharded": {}, "shard_map": {}}
    for row in CHECKS:
        out["sharded"][row.name] = _sharded(row, mesh)
        if "param" in _example(row, np.float32)[1]:
            out["shard_map"][row.name] = _shard_map(row, mesh)
    out["without_vma"] = _shard_map(_convolution_without_vma(), mesh)
    print(json.dumps(out))


# --- the tests ------------------------------------------------------------------


_REPORTS: dict[str, dict | str] = {}  # per mesh kind: its report, or why there is none


def _run_reports() -> dict[str, dict | str]:
    """Both mesh kinds' reports, their subprocesses run side by side."""
    env = four_cpu_devices_env(DEVICES)
    procs = {}
    try:
        for axes in AXES:
            # The suite's strict settings (tests/conftest.py), before the table builds its args.
            code = (
                "import jax; jax.config.update('jax_enable_x64', True); "
                "jax.config.update('jax_numpy_rank_promotion', 'raise'); "
                "jax.config.update('jax_numpy_dtype_promotion', 'strict'); "
                f"from tests.test_sharding import report; report({axes!r})"
            )
            procs[axes] = subprocess.Popen(
                [sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
        reports = {}
        for axes, proc in procs.items():
            stdout, stderr = proc.communicate()
            ok = proc.returncode == 0
            reports[axes] = json.loads(stdout.strip().splitlines()[-1]) if ok else stderr[-3000:]
        return reports
    finally:  # a timeout or an interrupt leaves no process behind
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _report(axes):
    if not _REPORTS:
        try:
            _REPORTS.update(_run_reports())
        except BaseException as e:  # the next test reports it instead of running again
            _REPORTS.update(dict.fromkeys(AXES, f"no report: {type(e).__name__}: {e}"))
            raise
    report = _REPORTS[axes]
    if isinstance(report, str):
        pytest.fail(report)
    assert report["devices"] == DEVICES
    return report


@pytest.mark.parametrize("name", [row.name for row in CHECKS])
@pytest.mark.parametrize("axes", AXES)
def test_batch_sharded_gradients_equal_one_devices(axes, name):
    for mode, result in _report(axes)["sharded"][name].items():
        assert not isinstance(result, str), f"{mode}: {result}"
        assert result < 1e-5, mode


@pytest.mark.parametrize("name", _rows_with_params())
@pytest.mark.parametrize("axes", AXES)
def test_shard_map_step_gives_the_twins_gradients(axes, name):
    result = _report(axes)["shard_map"][name]
    assert not isinstance(result, str), result
    assert result["max_rel"] < result["rtol"]


@pytest.mark.parametrize("axes", AXES)
def test_shard_map_step_catches_a_rule_registered_without_vma(axes):
    # dW = dout.T @ col varies over the batch while W does not: JAX refuses the cotangent.
    result = _report(axes)["without_vma"]
    assert isinstance(result, str) and "Custom VJP bwd rule must produce" in result, result
