"""``funcbp bench``: funcbp's training loop against the book's NumPy code, plain JAX and PyTorch.

``--model`` picks the network, one row of :data:`MODELS`: the book's
784-50-10 TwoLayerNet (the default) or its SimpleConvNet. Every
implementation trains it with SGD (lr 0.1, batch 100) on the bundled
mnist-5k, in one process, from the same float32 init and on the same
minibatch schedule: step i's rows are ``funcbp.steps.minibatch_indices``, the
indices ``funcbp train`` draws, computed once and handed to the baselines as
an array. Rounds are interleaved (each round runs every implementation once,
in a rotated order) and each figure is the median over rounds.

Throughputs count model-steps: ``funcbp-seeds8`` trains 8 models per step,
so its ``steps_per_s`` is 8 * 10,000 / ``s_per_10k``, and its ratios and
GFLOP/s count 8 models' work. ``s_per_10k`` is always wall seconds per
10,000 steps of that implementation's loop.

The roofline is measured in the same run: for each matmul that one step
needs (:func:`matmul_shapes`, read off the network's layers), the faster of
NumPy's BLAS and a jitted XLA matmul on that shape, summed over the step.
``roofline_frac`` = achieved GFLOP/s / roofline GFLOP/s.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcbp import _checks, book_numpy, conv, layers, zoo
from funcbp.config import make_optimizer
from funcbp.data import load_for_model
from funcbp.io import atomic_write
from funcbp.net import Network
from funcbp.steps import init_train_state, make_chunk, minibatch_indices, run_keys
from funcbp.zoo import two_layer

__all__ = [
    "MODELS",
    "NAMES",
    "BenchModel",
    "flops_per_step",
    "format_table",
    "matmul_shapes",
    "plot_bench",
    "run_bench",
    "settings",
]

NAMES = (
    "funcbp-manual",
    "funcbp-autodiff",
    "jax-lax-conv",
    "numpy-book",
    "torch-eager",
    "funcbp-seeds8",
    "funcbp-seeds8-shared",
)
"""Every row a report can have, in the order they run; a model has those its entry gives."""
BATCH_SIZE = 100
LR = 0.1
ENSEMBLE_K = 8
PER = 10_000  # the unit of s_per_10k
PAUSE_S = 0.2  # between timed runs: longer than OpenBLAS spins (~0.1 s)


# --- the models and their baselines ---------------------------------------------------


def _torch_two_layer(torch, p, xb):
    return torch.relu(xb @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def _torch_simple_convnet(torch, p, xb):
    f = torch.nn.functional
    h = f.max_pool2d(f.relu(f.conv2d(xb, p["W1"], p["b1"])), 2, 2)
    h = f.relu(f.linear(h.flatten(1), p["W2"].T, p["b2"]))  # the book's W is (in, out)
    return f.linear(h, p["W3"].T, p["b3"])


def _lax_simple_convnet(p, xb):
    """What a JAX user writes: XLA's convolution and max pool, NCHW, the book's flatten."""
    h = lax.conv_general_dilated(
        xb, p["W1"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    h = jax.nn.relu(h + p["b1"][None, :, None, None])
    h = lax.reduce_window(
        h, np.array(-np.inf, h.dtype), lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"
    )
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"][None, :])
    return h @ p["W3"] + p["b3"][None, :]


@dataclass(frozen=True)
class BenchModel:
    """One ``--model``: a model of :data:`funcbp.zoo.MODELS`, its baselines and run lengths.

    Attributes:
        name: its name in the registry; :attr:`net` is the registry's network
            at the book's sizes (its manual and autodiff rows, and the FLOP count).
        title: how the table and the plot name it.
        book: the book's NumPy class, built on a params dict (the numpy-book row).
        torch_scores: ``(torch, params, xb) -> scores`` (the torch-eager row).
        lax_scores: ``(params, xb) -> scores`` in plain jnp, for ``jax.grad`` (the
            jax-lax-conv row); None for none.
        steps, quick_steps: steps per run by default and with ``--quick``.
    """

    name: str
    title: str
    book: Callable[[dict[str, np.ndarray]], Any]
    torch_scores: Callable
    lax_scores: Callable | None
    steps: int
    quick_steps: int

    @property
    def net(self) -> Network:
        return zoo.build(self.name)


MODELS = {
    model.name: model
    for model in (
        BenchModel(
            "two-layer", "784-50-10", book_numpy.TwoLayerNet, _torch_two_layer, None, 10_000, 300
        ),
        BenchModel(
            "simple-convnet",
            "SimpleConvNet 30x5x5-pool-100-10",
            book_numpy.SimpleConvNet,
            _torch_simple_convnet,
            _lax_simple_convnet,
            200,
            20,
        ),
    )
}
"""What ``funcbp bench --model NAME`` runs: the registry's models that have the book's
NumPy class and a PyTorch twin; the rows follow from the entry."""


def _numpy_book_train(book, params, x, t, idx) -> dict[str, np.ndarray]:
    params = {k: v.copy() for k, v in params.items()}
    net = book(params)
    for batch in idx:
        grads = net.gradient(x[batch], t[batch])
        for key in params:  # in place: the layers hold these very arrays
            params[key] -= LR * grads[key]
    return params


# --- FLOPs and the roofline ----------------------------------------------------


class _Weighted(NamedTuple):
    """An Affine or a Convolution as one matmul: (rows, fan_in) @ (fan_in, fan_out)."""

    w: str  # its weight's name
    conv: bool
    rows: int  # N, or N*OH*OW for a convolution's im2col matrix
    fan_in: int  # D, or C*FH*FW
    fan_out: int  # H, or FN
    features: int  # of one example entering the layer: D, or C*H*W


def _weighted_layers(net: Network, batch_size: int) -> list[_Weighted]:
    """The Affine and Convolution layers in order, one batch's shape walked through ``net.layers``.

    Shapes are in the book's (C, H, W) order. Layers other than convolution,
    pooling and Affine keep the shape (activations, dropout, batch norm, the
    layout transposes).
    """
    specs = {s.name: s.shape for s in net.param_specs}
    shape = net.input_shape
    found = []
    for layer in net.layers:
        options = dict(layer.options)
        if layer.fn is conv.convolution:
            fn, c, fh, fw = specs[layer.params[0]]
            oh, ow = _out_sides(shape, (fh, fw), options)
            rows = batch_size * oh * ow
            found.append(_Weighted(layer.params[0], True, rows, c * fh * fw, fn, math.prod(shape)))
            shape = (fn, oh, ow)
        elif layer.fn is conv.pooling:
            shape = (shape[0], *_out_sides(shape, (options["pool_h"], options["pool_w"]), options))
        elif layer.fn is layers.affine:
            d, h = specs[layer.params[0]]
            found.append(_Weighted(layer.params[0], False, batch_size, d, h, d))
            shape = (h,)
    return found


def _out_sides(shape, window, options) -> tuple[int, int]:
    stride, pad = options["stride"], options["pad"]
    return tuple((n + 2 * pad - f) // stride + 1 for n, f in zip(shape[1:], window, strict=True))


def matmul_shapes(
    net: Network = two_layer, batch_size: int = BATCH_SIZE
) -> list[tuple[str, tuple[int, int, int], str, bool]]:
    """``(name, (m, k, n), transposed, needed)`` for every matmul of one SGD step of ``net``.

    An Affine (D -> H) on a batch of N: forward ``x @ W`` (N, D, H); backward
    ``dout @ W.T`` (N, H, D) and ``x.T @ dout`` (D, N, H). A Convolution is the
    same three on im2col's matrix ``col`` (N*OH*OW, C*FH*FW) and the book's
    ``col_W`` (C*FH*FW, FN), named by W. Forward matmuls in layer order, then
    each layer's dx and dW from the last layer back.

    ``transposed`` says which operand the step reads through a transpose
    (``"lhs"``, ``"rhs"`` or ``""``), as ``x.T @ dh`` reads x. ``needed`` is
    False for the first weighted layer's dx (``dh@W1.T``), which the gradient
    never uses.
    """
    weighted = _weighted_layers(net, batch_size)
    forward, backward = [], []
    for i, layer in enumerate(weighted):
        x = "x" if i == 0 else "h"
        x = f"col({x})" if layer.conv else x
        dout = "dout" if i == len(weighted) - 1 else "dh"
        m, k, n = layer.rows, layer.fan_in, layer.fan_out
        forward.append((f"{x}@{layer.w}", (m, k, n), "", True))
        backward[:0] = [
            (f"{dout}@{layer.w}.T", (m, n, k), "rhs", i > 0),
            (f"{x}.T@{dout}", (k, m, n), "lhs", True),
        ]
    return forward + backward


def flops_per_step(net: Network = two_layer, batch_size: int = BATCH_SIZE) -> int:
    """The useful FLOPs of one SGD step: the matmuls :func:`matmul_shapes` needs, 2*m*k*n each.

    Per weighted layer: forward and dW, and dx for every layer but the first,
    whose dx nobody reads (the book computes it anyway; XLA drops it). 15.98
    MFLOP for 784-50-10 at B=100; 432.6 MFLOP for SimpleConvNet. Elementwise
    work (bias, ReLU, pooling, softmax, im2col's copies, the update) is left out.
    """
    return sum(2 * math.prod(mkn) for _, mkn, _, needed in matmul_shapes(net, batch_size) if needed)


def _sizes(net: Network) -> list[int]:
    """One example's features entering each weighted layer, then the scores: 784, 50, 10."""
    weighted = _weighted_layers(net, 1)
    return [layer.features for layer in weighted] + [weighted[-1].fan_out]


def _best_seconds(fn: Callable[[], Any], reps: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _time_matmuls(shapes, quick: bool) -> list[dict[str, Any]]:
    """Per shape of :func:`matmul_shapes`: the best seconds of NumPy (BLAS) and of jitted XLA."""
    rng = np.random.default_rng(0)
    most, repeats, copies = (100, 3, 4) if quick else (400, 5, 8)
    # FLOPs per timed loop: a convolution's big shapes get fewer reps, the MLP's all of them.
    budget = 1e9 if quick else 4e9
    rows = []
    for name, (m, k, n), transposed, needed in shapes:
        reps = max(copies, min(most, int(budget // (2 * m * k * n))))
        # Stored as in the step (x is (B, D) for x.T @ dh); distinct operands, cycled, so
        # nothing stays in cache that would not in training.
        a = rng.standard_normal((copies, k, m) if transposed == "lhs" else (copies, m, k))
        b = rng.standard_normal((copies, n, k) if transposed == "rhs" else (copies, k, n))
        a, b = a.astype(np.float32), b.astype(np.float32)

        def numpy_loop(a=a, b=b, transposed=transposed, reps=reps):
            for i in range(reps):
                lhs, rhs = a[i % copies], b[i % copies]
                np.dot(lhs.T if transposed == "lhs" else lhs, rhs.T if transposed == "rhs" else rhs)

        # The contracting dims that XLA's optimized HLO of the step has: no transpose op.
        dims = ((0,) if transposed == "lhs" else (1,), (1,) if transposed == "rhs" else (0,))

        @jax.jit
        def xla_loop(a, b, dims=dims, reps=reps):
            # In a scan, as in training: no per-call dispatch; the carry keeps every product live.
            def body(acc, i):
                prod = jax.lax.dot_general(a[i % copies], b[i % copies], (dims, ((), ())))
                return acc + prod[0, 0], None

            return jax.lax.scan(body, jnp.float32(0), jnp.arange(reps))[0]

        operands = jnp.asarray(a), jnp.asarray(b)
        xla_loop(*operands).block_until_ready()
        numpy_s = _best_seconds(numpy_loop, reps, repeats)
        xla_s = _best_seconds(
            lambda ops=operands: xla_loop(*ops).block_until_ready(), reps, repeats
        )
        best = min(numpy_s, xla_s)
        rows.append(
            {
                "name": name,
                "shape": [m, k, n],
                "needed": needed,
                "numpy_us": numpy_s * 1e6,
                "xla_us": xla_s * 1e6,
                "best_us": best * 1e6,
                "gflops": 2 * m * k * n / best / 1e9,
            }
        )
    return rows


# --- the implementations ------------------------------------------------------------


@dataclass
class _Impl:
    """One implementation: ``run()`` trains from the shared init and returns model 0's params."""

    name: str
    run: Callable[[], dict[str, np.ndarray]]
    models: int = 1
    compile_s: float = 0.0
    times: list[float] = field(default_factory=list)
    peak_mem_mb: float | None = None


def _funcbp_impl(name, net: Network, grad, seed, x, t, steps, *, models=1, shared=False) -> _Impl:
    """funcbp's training loop: the chunk ``funcbp train`` runs, compiled for ``steps`` steps."""
    opt = make_optimizer("sgd", LR)
    keys = run_keys(seed, models)
    state = init_train_state(net, opt, keys, models=models)
    chunk = make_chunk(lambda values: net, opt, grad, BATCH_SIZE, models=models, shared=shared)
    t0 = time.perf_counter()
    compiled = chunk.lower(state, 0, keys, {}, x, t, length=steps).compile()
    compile_s = time.perf_counter() - t0

    def run():
        new, losses = compiled(state, 0, keys, {}, x, t)
        losses.block_until_ready()
        return new.params if models == 1 else jax.tree.map(lambda a: a[0], new.params)

    return _Impl(name, run, models=models, compile_s=compile_s)


def _jax_impl(name, scores, params, x, t, idx) -> _Impl:
    """``jax.grad`` of plain jnp and SGD in a jitted ``lax.scan`` over the schedule ``idx``.

    What a JAX user writes, in the kind of loop ``funcbp train`` runs: the
    training set on the device, each step gathering its rows.
    """

    def loss(p, xb, tb):
        log_y = jax.nn.log_softmax(scores(p, xb))
        return -jnp.mean(jnp.take_along_axis(log_y, tb[:, None], axis=1))

    def train(p, idx):
        def step(p, batch):
            grads = jax.grad(loss)(p, x[batch], t[batch])
            return jax.tree.map(lambda v, g: v - LR * g, p, grads), None

        return lax.scan(step, p, idx)[0]

    params, idx = jax.tree.map(jnp.asarray, params), jnp.asarray(idx)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(params, idx).compile()
    compile_s = time.perf_counter() - t0
    return _Impl(name, lambda: jax.block_until_ready(compiled(params, idx)), compile_s=compile_s)


def _torch_impl(scores, params, x, t, idx) -> _Impl | None:
    try:
        import torch
    except ImportError:
        return None
    xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    idx_t = torch.from_numpy(idx.astype(np.int64))

    def run():
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        for batch in idx_t:
            loss = torch.nn.functional.cross_entropy(scores(torch, p, xt[batch]), tt[batch])
            loss.backward()
            with torch.no_grad():
                for v in p.values():
                    v -= LR * v.grad
                    v.grad = None
        return {k: v.detach().numpy() for k, v in p.items()}

    return _Impl("torch-eager", run)


# --- measuring ----------------------------------------------------------------------


def _rss_mb() -> tuple[float, float] | None:
    """(current, peak) resident MB from /proc; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f)
    except OSError:
        return None
    return tuple(float(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


def _reset_peak_rss() -> bool:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _with_peak_mem(run: Callable[[], Any]) -> tuple[Any, float]:
    """``(run(), MB)``: resident memory's growth during the call (VmHWM reset first).

    Off Linux, the growth of getrusage's max RSS (0 when below the old high-water mark).
    """
    if _reset_peak_rss() and (before := _rss_mb()):
        result = run()
        return result, max(_rss_mb()[1] - before[0], 0.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run()
    return result, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 0) / 1024


def _busy_ticks() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # busy, total (idle, iowait excluded)


def _background_cpu(t0_ticks, own0: float, wall: float) -> float | None:
    """The share of all CPUs that other processes used during a timed run."""
    t1_ticks = _busy_ticks()
    if t0_ticks is None or t1_ticks is None or wall <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (t1_ticks[0] - t0_ticks[0]) / hz
    own = sum(os.times()[:2]) - own0
    return max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict[str, Any]:
    """What ran the benchmark: JAX's device, the CPU and the versions."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _time_rounds(impls: list[_Impl], rounds: int, log: Callable[[str], None]) -> list[float]:
    """Runs each implementation once a round, in rotated order; returns the background CPU."""
    background = []
    for r in range(rounds):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        for impl in order:
            # OpenBLAS's and OpenMP's idle workers spin for a while after a call; let them
            # go to sleep, so they do not take a core from the next implementation.
            time.sleep(PAUSE_S)
            ticks, own0 = _busy_ticks(), sum(os.times()[:2])
            t0 = time.perf_counter()
            impl.run()
            wall = time.perf_counter() - t0
            impl.times.append(wall)
            if (share := _background_cpu(ticks, own0, wall)) is not None:
                background.append(share)
        log(f"round {r + 1}/{rounds}: " + ", ".join(f"{i.name} {i.times[-1]:.2f} s" for i in impls))
    return background


def _results(impls: list[_Impl], finals: dict, steps: int, roofline_s: float, flops: int) -> list:
    """One row per implementation: medians scaled to 10,000 steps, and the ratios between them."""
    reference = finals["funcbp-manual"]
    per_10k = {i.name: statistics.median(i.times) * PER / steps for i in impls}
    results = []
    for impl in impls:
        s = per_10k[impl.name]
        steps_per_s = impl.models * PER / s
        final = finals[impl.name]
        diff = max(float(np.max(np.abs(np.asarray(final[k]) - reference[k]))) for k in reference)
        results.append(
            {
                "name": impl.name,
                "models": impl.models,
                "s_per_10k": s,
                "steps_per_s": steps_per_s,
                "speedup_vs_numpy": steps_per_s / (PER / per_10k["numpy-book"]),
                "vs_autodiff": steps_per_s / (PER / per_10k["funcbp-autodiff"]),
                "roofline_frac": impl.models * roofline_s / s,
                "gflops": flops * steps_per_s / 1e9,
                "compile_s": impl.compile_s,
                "peak_mem_mb": impl.peak_mem_mb,
                "max_param_diff_vs_manual": diff,
                "rounds_s": impl.times,
            }
        )
    return results


def _implementations(model: BenchModel, data, steps: int, seed: int, torch: bool, seeds: int):
    """``(impls, notes)``: every row ``model`` has, compiled for ``steps`` steps."""
    (x_np, t_np), (x, t) = data
    net = model.net
    keys = run_keys(seed)  # as funcbp train derives them
    params_np = {k: np.asarray(v) for k, v in net.init(keys.init).items()}
    draw = jax.jit(minibatch_indices, static_argnums=(2, 3, 4))
    idx = np.asarray(draw(keys.data, 0, steps, BATCH_SIZE, x.shape[0]))

    impls = [
        _funcbp_impl("funcbp-manual", net, "manual", seed, x, t, steps),
        _funcbp_impl("funcbp-autodiff", net, "autodiff", seed, x, t, steps),
    ]
    if model.lax_scores is not None:
        impls.append(_jax_impl("jax-lax-conv", model.lax_scores, params_np, x, t, idx))
    book = model.book
    impls.append(_Impl("numpy-book", lambda: _numpy_book_train(book, params_np, x_np, t_np, idx)))
    notes = []
    torch_impl = _torch_impl(model.torch_scores, params_np, x_np, t_np, idx) if torch else None
    if torch_impl is not None:
        impls.append(torch_impl)
    else:
        why = "torch is not installed" if torch else "--no-torch"
        notes.append(f"torch-eager skipped: {why}")
    for shared in (False, True):
        name = f"funcbp-seeds{seeds}" + ("-shared" if shared else "")
        impls.append(
            _funcbp_impl(name, net, "manual", seed, x, t, steps, models=seeds, shared=shared)
        )
    return impls, notes


def settings(model: str, steps: int | None, rounds: int, seeds: int, quick: bool) -> int:
    """The run's steps per timed run (the model's default for None), every setting checked."""
    entry = MODELS[_checks.one_of("model", model, MODELS)]
    steps = (entry.quick_steps if quick else entry.steps) if steps is None else steps
    for name, value in (("steps", steps), ("rounds", rounds), ("seeds", seeds)):
        _checks.integer(name, value)
    return steps


def run_bench(
    steps: int | None = None,
    rounds: int = 5,
    *,
    model: str = "two-layer",
    seed: int = 0,
    quick: bool = False,
    torch: bool = True,
    seeds: int = ENSEMBLE_K,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Times every implementation; returns the report that ``--json`` writes.

    Args:
        steps: SGD steps per run (every figure is scaled to 10,000); None for
            the model's default (its ``quick_steps`` with ``quick``).
        rounds: interleaved rounds; figures are medians over them.
        model: a key of :data:`MODELS`.
        seed: the init and minibatch seed, as ``funcbp train --seed``.
        quick: the short run: fewer steps, fewer repetitions for the matmul roofline.
        torch: include PyTorch eager when it is importable.
        seeds: K, the models trained at once by ``funcbp-seedsK`` (own batches) and
            ``funcbp-seedsK-shared`` (one batch stream; the first layer fused when it
            is an Affine, the models vmapped otherwise).
        log: progress lines.
    """
    steps = settings(model, steps, rounds, seeds, quick)
    bench_model = MODELS[model]
    net = bench_model.net
    (x_np, t_np), _ = load_for_model("mnist-5k", net.input_shape)
    x, t = jnp.asarray(x_np), jnp.asarray(t_np)  # on the device once, outside every timing

    log(f"compiling ({steps} steps per run) ...")
    data = (x_np, t_np), (x, t)
    impls, notes = _implementations(bench_model, data, steps, seed, torch, seeds)

    log("warm-up runs (and peak memory) ...")
    finals = {}
    for impl in impls:
        # The warm-up keeps first-call costs out of the timings; its memory growth is reported.
        finals[impl.name], impl.peak_mem_mb = _with_peak_mem(impl.run)
    log("matmul roofline ...")
    matmuls = _time_matmuls(matmul_shapes(net), quick)
    roofline_s = sum(m["best_us"] for m in matmuls if m["needed"]) * 1e-6 * PER

    background = _time_rounds(impls, rounds, log)
    flops = flops_per_step(net)
    results = _results(impls, finals, steps, roofline_s, flops)
    return _report(
        model, net, steps, rounds, flops, roofline_s, matmuls, background, notes, results
    )


def _report(model, net, steps, rounds, flops, roofline_s, matmuls, background, notes, results):
    return {
        "model": model,
        "device": device_info(),
        "steps": steps,
        "rounds": rounds,
        "batch_size": BATCH_SIZE,
        "sizes": _sizes(net),
        "flops_per_step": flops,
        "roofline_s_per_10k": roofline_s,
        "roofline_gflops": flops * PER / roofline_s / 1e9,
        "matmuls": matmuls,
        "background_cpu": statistics.median(background) if background else None,
        "peak_mem_method": "growth of resident memory during the warm-up run, after data, init "
        "and compilation (Linux VmHWM, reset via /proc/self/clear_refs)",
        "notes": notes,
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, slowest first."""
    dev, title = report["device"], MODELS[report["model"]].title
    lines = [
        f"funcbp bench: {title}, batch {report['batch_size']}, SGD, {report['steps']} steps x "
        f"{report['rounds']} rounds (median), float32",
        f"device: {dev['platform']} ({dev['device_kind']}); CPU: {dev['cpu']} x {dev['cpu_count']}"
        + (f"; XLA_FLAGS={dev['xla_flags']}" if dev["xla_flags"] else ""),
        f"useful work {report['flops_per_step'] / 1e6:.2f} MFLOP/step; roofline "
        f"{report['roofline_s_per_10k']:.2f} s/10k ({report['roofline_gflops']:.0f} GFLOP/s)",
        "",
        f"{'name':<22}{'s/10k':>8}{'steps/s':>9}{'vs numpy':>10}{'vs autodiff':>12}"
        f"{'roofline':>10}{'GFLOP/s':>9}{'compile s':>11}{'mem MB':>8}",
    ]
    for r in sorted(report["results"], key=lambda r: -r["s_per_10k"]):
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.1f}"
        lines.append(
            f"{r['name']:<22}{r['s_per_10k']:>8.2f}{r['steps_per_s']:>9.0f}"
            f"{r['speedup_vs_numpy']:>9.2f}x{r['vs_autodiff']:>11.2f}x"
            f"{100 * r['roofline_frac']:>9.0f}%{r['gflops']:>9.1f}{r['compile_s']:>11.2f}{mem:>8}"
        )
    if report["background_cpu"] is not None:
        lines.append(
            f"other processes used {100 * report['background_cpu']:.0f}% of the CPUs "
            "during the timed runs (median)"
        )
    lines += report["notes"]
    return "\n".join(lines)


def plot_bench(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """A bar chart of model-steps per second, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(report["results"], key=lambda r: r["steps_per_s"])
    names = [r["name"] for r in results]
    values = [r["steps_per_s"] for r in results]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(results) + 1.5))
    bars = ax.barh(names, values, color=["C1" if n == "numpy-book" else "C0" for n in names])
    for bar, r in zip(bars, results, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {r['speedup_vs_numpy']:.2f}x NumPy", va="center")  # fmt: skip
    roofline = PER / report["roofline_s_per_10k"]
    label = f"one model's matmul roofline {roofline:.0f}"
    ax.axvline(roofline, color="gray", linestyle="--", label=label)
    title = (
        f"{MODELS[report['model']].title}, batch {report['batch_size']}, {report['device']['cpu']}"
    )
    ax.set(xlabel="model-steps per second (higher is better)", title=title)
    ax.set_xlim(0, max(*values, roofline) * 1.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path
