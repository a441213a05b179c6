"""Networks as layer sequences: the four gradient methods agree; backprop uses no autodiff."""

import json
import subprocess
import sys
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import layers
from funcbp.net import GRADIENT_METHODS, Network, check_compute_dtype, stats_dtype
from funcbp.zoo import network, simple_convnet_net, two_layer, two_layer_net
from tests.cases import four_cpu_devices_env


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (3, 20)))
    t = jnp.asarray(rng.integers(0, 4, 3))
    return x, t


SMALL_NETS = {
    "two_layer": two_layer_net(20, 8, 4, weight_init_std="he"),
    "sigmoid-6-5": network([6, 5], "sigmoid", input_size=20, output_size=4),
    "relu-7-6-5": network([7, 6, 5], input_size=20, output_size=4),
    "weight-decay": network([7, 6], input_size=20, output_size=4, weight_decay=0.3),
}


@pytest.mark.parametrize("net", SMALL_NETS.values(), ids=SMALL_NETS.keys())
def test_the_four_gradient_methods_agree(net, batch):
    x, t = batch
    params = net.init(jax.random.key(1), dtype=jnp.float64)
    gradient = jax.jit(net.gradient, static_argnames="method")
    grads = {m: gradient(params, x, t, method=m) for m in GRADIENT_METHODS}
    for m in ("backprop", "autodiff"):
        chex.assert_trees_all_close(grads[m], grads["manual"], rtol=1e-10, atol=1e-14)
    chex.assert_trees_all_close(grads["numerical"], grads["manual"], rtol=1e-5, atol=1e-8)


def test_weight_decay_is_the_books_term_and_gradient(batch):
    x, t = batch
    plain = SMALL_NETS["relu-7-6-5"].replace(weight_decay=0.0)
    decayed = plain.replace(weight_decay=0.3)
    params = plain.init(jax.random.key(2), dtype=jnp.float64)
    weights = sum(jnp.sum(params[w] ** 2) for w in ("W1", "W2", "W3", "W4"))
    np.testing.assert_allclose(
        decayed.loss(params, x, t), plain.loss(params, x, t) + 0.5 * 0.3 * weights, rtol=1e-12
    )
    g_plain, g_decayed = plain.backprop(params, x, t), decayed.backprop(params, x, t)
    for name in params:  # lambda * W on the weights; biases untouched
        extra = 0.3 * params[name] if name.startswith("W") else 0.0
        np.testing.assert_allclose(g_decayed[name], g_plain[name] + extra, rtol=1e-10, atol=1e-14)


def test_backprop_uses_no_autodiff(batch, monkeypatch):
    x, t = batch
    net = SMALL_NETS["weight-decay"]
    params = net.init(jax.random.key(0), dtype=jnp.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("backprop must not call jax.grad or jax.vjp")

    monkeypatch.setattr(jax, "grad", refuse)
    monkeypatch.setattr(jax, "vjp", refuse)
    monkeypatch.setattr(jax, "value_and_grad", refuse)
    grads = net.backprop(params, x, t)
    assert list(grads) == list(params)


def test_predict_accuracy_and_one_hot_labels(batch):
    x, t = batch
    net = SMALL_NETS["two_layer"]
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    scores = net.predict(params, x)
    assert scores.shape == (3, 4)
    expected = jnp.mean(jnp.argmax(scores, 1) == t)
    assert net.accuracy(params, x, t) == expected
    assert net.accuracy(params, x, jax.nn.one_hot(t, 4)) == expected
    np.testing.assert_allclose(
        net.loss(params, x, t), funcbp.softmax_with_loss(scores, t), rtol=1e-12
    )
    # Train mode returns the new layer state too (none here).
    (loss, state) = net.loss(params, x, t, train=True)
    assert state == {} and loss == net.loss(params, x, t)


def test_init_scales_dtypes_and_the_books_names():
    params = two_layer.init(jax.random.key(0))
    assert list(params) == ["W1", "b1", "W2", "b2"]
    chex.assert_shape(
        [params["W1"], params["b1"], params["W2"], params["b2"]],
        [(784, 50), (50,), (50, 10), (10,)],
    )
    assert float(jnp.std(params["W1"])) == pytest.approx(0.01, rel=0.05)
    assert not jnp.any(params["b1"]) and params["W1"].dtype == jnp.float32
    wide = network([400]).init(jax.random.key(0), dtype=jnp.float64)
    assert wide["W1"].dtype == jnp.float64
    assert float(jnp.std(wide["W1"])) == pytest.approx((2 / 784) ** 0.5, rel=0.05)  # He
    assert float(jnp.std(wide["W2"])) == pytest.approx((2 / 400) ** 0.5, rel=0.1)
    sig = network([400], "sigmoid").init(jax.random.key(0))
    assert float(jnp.std(sig["W1"])) == pytest.approx((1 / 784) ** 0.5, rel=0.05)  # Xavier
    fixed = network([400]).init(jax.random.key(0), weight_init_std=0.5)
    assert float(jnp.std(fixed["W1"])) == pytest.approx(0.5, rel=0.05)


def test_check_params_names_the_wrong_entry():
    params = two_layer.init(jax.random.key(0))
    two_layer.check_params(params)
    with pytest.raises(
        ValueError, match=r"params\['W1'\] must have shape \(784, 50\).*got \(784, 60\)"
    ):
        two_layer.check_params({**params, "W1": jnp.zeros((784, 60))})
    with pytest.raises(
        ValueError, match=r"params must hold W1, b1, W2, b2 for two-layer; missing: b1, W2, b2$"
    ):
        two_layer.check_params({"W1": params["W1"]})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: network([0]), "hidden_sizes must be positive integers"),
        (lambda: network([]), "hidden_sizes must be positive integers"),
        (lambda: network([5], "tanh"), "activation must be one of relu, sigmoid, got 'tanh'"),
        (lambda: two_layer_net(784, 0), "hidden_size and output_size must be positive"),
        (lambda: two_layer_net(weight_init_std=-1), "weight_init_std must be a positive finite"),
        (lambda: two_layer_net(weight_init_std=float("inf")), "weight_init_std must be"),
        (lambda: network([5], weight_decay=-1.0), "weight_decay must be a finite number >= 0"),
        (lambda: two_layer.init(jax.random.key(0), weight_init_std="wide"), "weight_init_std"),
        (lambda: two_layer.gradient({}, None, None, method="magic"), "method must be one of"),
    ],
)
def test_bad_network_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_network_is_static_for_jit():
    # Frozen and hashable: jit can take the network itself as a static argument.
    assert isinstance(two_layer, Network) and hash(two_layer) == hash(two_layer_net())
    loss = jax.jit(lambda net, p, x, t: net.loss(p, x, t), static_argnums=0)
    params = two_layer.init(jax.random.key(0))
    x, t = jnp.zeros((2, 784), jnp.float32), jnp.array([1, 2])
    assert loss(two_layer, params, x, t) == pytest.approx(np.log(10), rel=1e-3)


# --- one check for every entry point ---------------------------------------------

_TWO = two_layer_net(20, 8, 4)
_EXTEND = network([6, 5], batch_norm=True, dropout=0.2, input_size=20, output_size=4)


def _entry_points(net, state=None):
    """Every way into a network, each called on (params, x, t)."""
    key = jax.random.key(0)
    return {
        "predict": lambda p, x, t: net.predict(p, x, state),
        "loss": lambda p, x, t: net.loss(p, x, t, state),
        "accuracy": lambda p, x, t: net.accuracy(p, x, t, state),
        "reference_loss": lambda p, x, t: net.reference_loss(p, x, t, state),
        **{
            m: partial(net.gradient, state=state, key=key, method=m)
            for m in ("manual", "backprop", "autodiff")
        },
    }


@pytest.mark.parametrize("entry", list(_entry_points(_TWO)))
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: {**p, "W9": p["W1"]}, r"for two-layer; unknown: W9(\n|$)"),
        (lambda p: {k: v for k, v in p.items() if k != "b2"}, r"for two-layer; missing: b2(\n|$)"),
        (
            lambda p: {"W0": 1.0, "W9": 1.0, "W1": p["W1"], "b1": p["b1"]},
            r"for two-layer; unknown: W0, W9; missing: W2, b2(\n|$)",
        ),
        # The wrong array is named, not the bias the layer checks it against.
        (lambda p: {**p, "W1": p["W1"][:, :7]}, r"params\['W1'\] must have shape \(20, 8\)"),
        (lambda p: {**p, "b1": p["b1"][:7]}, r"params\['b1'\] must have shape \(8,\)"),
    ],
    ids=["unknown", "missing", "both", "wrong-W1", "wrong-b1"],
)
def test_every_entry_point_names_wrong_params(entry, change, message, batch):
    x, t = batch
    params = _TWO.init(jax.random.key(0), dtype=jnp.float64)
    with pytest.raises(ValueError, match=message):
        _entry_points(_TWO)[entry](change(params), x, t)


def test_params_and_state_in_the_wrong_dict_are_named(batch):
    x, t = batch
    params = _EXTEND.init(jax.random.key(0), dtype=jnp.float64)
    state = _EXTEND.init_state(jnp.float64)
    with pytest.raises(
        ValueError,
        match=r"params must hold .*; unknown: running_mean1 \(layer state: pass it as state",
    ):
        _EXTEND.loss({**params, "running_mean1": state["running_mean1"]}, x, t, state)
    with pytest.raises(ValueError, match=r"state must hold .*; unknown: W1 \(a param: pass it in"):
        _EXTEND.loss(params, x, t, {**state, "W1": params["W1"]})
    with pytest.raises(
        ValueError, match=r"state must hold running_mean1, .*; missing: running_var2"
    ):
        _EXTEND.predict(params, x, {k: v for k, v in state.items() if k != "running_var2"})
    with pytest.raises(ValueError, match=r"state must hold nothing for two-layer; unknown: extra"):
        _TWO.predict(_TWO.init(jax.random.key(0)), x, {"extra": jnp.zeros(3)})


def test_params_of_mixed_dtypes_are_refused_by_name(batch):
    x, t = batch
    params = _TWO.init(jax.random.key(0), dtype=jnp.float64)
    mixed = {**params, "b2": params["b2"].astype(jnp.float32)}
    with pytest.raises(
        TypeError, match="params must share one floating-point dtype, got W1: float64"
    ):
        _TWO.loss(mixed, x, t)
    with pytest.raises(TypeError, match="b2: int32"):
        _TWO.predict({**params, "b2": jnp.zeros(4, jnp.int32)}, x)


def test_the_check_runs_once_per_trace_not_per_step(batch, monkeypatch):
    x, t = batch
    params = _TWO.init(jax.random.key(0), dtype=jnp.float64)
    calls = []
    check = Network.check_params
    monkeypatch.setattr(Network, "check_params", lambda *a: calls.append(1) or check(*a))
    step = jax.jit(partial(_TWO.gradient, method="backprop"))
    for i in range(3):
        step(jax.tree.map(lambda a, i=i: a + i, params), x, t)
    assert len(calls) == 1


def test_eval_mode_before_training_gives_a_huge_loss(batch):
    # running_var starts at 0, as in the book: eval mode divides by sqrt(1e-6).
    x, t = batch
    net = network([6], batch_norm=True, input_size=20, output_size=4, weight_init_std=0.3)
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    state = net.init_state(jnp.float64)
    assert not any(jnp.any(v) for v in state.values())
    train_loss, trained = net.loss(params, x, t, state, train=True)
    assert train_loss < 5 and net.loss(params, x, t, state) > 100 * train_loss
    assert net.loss(params, x, t, trained) < 100 * train_loss


# --- mixed precision ----------------------------------------------------------------

# The book's SimpleConvNet and MultiLayerNetExtend, small; float32 master weights.
_CONV = simple_convnet_net((1, 10, 10), filters=4, filter_size=3, hidden_size=12, output_size=5)
_BN = network([12], batch_norm=True, dropout=0.2, weight_decay=0.1, input_size=20, output_size=5)
_MIXED = {"simple-convnet": _CONV, "multi-layer-extend": _BN}


def _float32_batch(net, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(0, 1, (16, *net.input_shape)), jnp.float32)
    return x, jnp.asarray(rng.integers(0, 5, 16), jnp.int32)


_VALUE_AND_GRAD = jax.jit(
    lambda net, *a, **k: net.value_and_grad(*a, **k),
    static_argnums=0,
    static_argnames=("method", "compute_dtype"),
)


@pytest.mark.parametrize("net", _MIXED.values(), ids=_MIXED.keys())
def test_bfloat16_compute_with_float32_params(net):
    x, t = _float32_batch(net)
    params = net.init(jax.random.key(0), weight_init_std=0.1)
    state, key = net.init_state(), jax.random.key(1)
    (loss32, state32), g32 = _VALUE_AND_GRAD(net, params, x, t, state, key=key)
    out = {}
    for method in ("manual", "backprop"):  # autodiff shares manual's forward and casts
        out[method] = _VALUE_AND_GRAD(
            net, params, x, t, state, key=key, method=method, compute_dtype="bfloat16"
        )
        (loss, new_state), grads = out[method]
        assert loss.dtype == jnp.float32
        assert {g.dtype for g in grads.values()} == {jnp.dtype(jnp.float32)}
        assert {v.dtype for v in new_state.values()} <= {jnp.dtype(jnp.float32)}
        assert abs(loss - loss32) < 0.02 * loss32
        for name, g in grads.items():
            if name == "b1" and net is _BN:
                continue  # before batch norm: a zero gradient, rounding noise in both
            error = float(jnp.linalg.norm(g - g32[name]) / jnp.linalg.norm(g32[name]))
            # bfloat16 keeps 8 bits (eps 0.4%), and a rounded ReLU input flips its
            # mask now and then; 0 would mean no bfloat16 at all.
            assert 0 < error < 0.1, (method, name, error)
        for name, v in new_state.items():
            np.testing.assert_allclose(v, state32[name], rtol=0.02, atol=1e-3)
    # The explicit sweep transposes the casts as autodiff does.
    chex.assert_trees_all_close(out["backprop"], out["manual"], rtol=1e-6, atol=1e-7)


def test_bfloat16_scores_are_the_bfloat16_networks():
    x, _ = _float32_batch(_CONV)
    params = _CONV.init(jax.random.key(0), weight_init_std=0.3)
    predict = jax.jit(_CONV.predict, static_argnames="compute_dtype")
    scores = predict(params, x, compute_dtype=jnp.bfloat16)
    in_bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert scores.dtype == jnp.float32
    np.testing.assert_array_equal(scores, predict(in_bf16, x).astype(jnp.float32))


def test_batch_norm_statistics_are_taken_in_float32():
    x, t = _float32_batch(_BN)
    params = _BN.init(jax.random.key(0), weight_init_std=0.3)
    bf16 = {k: params[k].astype(jnp.bfloat16) for k in ("W1", "b1")}
    h = layers.affine(x.astype(jnp.bfloat16), bf16["W1"], bf16["b1"]).astype(jnp.float32)
    loss = jax.jit(partial(_BN.loss, train=True, compute_dtype="bfloat16"))
    _, state = loss(params, x, t, _BN.init_state(), key=jax.random.key(1))
    # From zero running statistics, the first update is 0.1 * the batch's float32 mean.
    np.testing.assert_allclose(state["running_mean1"], 0.1 * jnp.mean(h, 0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(state["running_var1"], 0.1 * jnp.var(h, 0), rtol=1e-5, atol=1e-9)


def test_float16_runs_predict_and_is_refused_for_gradients():
    x, t = _float32_batch(_CONV)
    params = _CONV.init(jax.random.key(0), weight_init_std=0.3)
    predict = jax.jit(_CONV.predict, static_argnames="compute_dtype")
    scores = predict(params, x, compute_dtype="float16")
    assert scores.dtype == jnp.float32
    np.testing.assert_allclose(scores, predict(params, x), rtol=0.02, atol=0.02)
    for call in (
        lambda: _CONV.loss(params, x, t, compute_dtype="float16"),
        lambda: _CONV.backprop(params, x, t, compute_dtype="float16"),
        *(
            partial(_CONV.gradient, params, x, t, method=m, compute_dtype=jnp.float16)
            for m in GRADIENT_METHODS
        ),
    ):
        with pytest.raises(ValueError, match=r"float16 needs loss scaling.*Use bfloat16"):
            call()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("int32", "compute_dtype must be None or one of bfloat16, float16, float32, float64"),
        ("half-ish", "got 'half-ish'"),
        (jnp.float8_e4m3fn, "compute_dtype must be None or one of"),
    ],
)
def test_bad_compute_dtypes_are_named(value, message, batch):
    with pytest.raises(ValueError, match=message):
        check_compute_dtype(value)
    x, _ = batch
    with pytest.raises(ValueError, match=message):
        _TWO.predict(_TWO.init(jax.random.key(0)), x, compute_dtype=value)


def test_batch_norm_state_must_be_in_its_statistics_dtype(batch):
    x, _ = batch
    params = _EXTEND.init(jax.random.key(0))
    assert stats_dtype(jnp.bfloat16) == stats_dtype(jnp.float16) == jnp.float32
    assert stats_dtype(jnp.float64) == jnp.float64
    assert _EXTEND.init_state(jnp.bfloat16)["running_var1"].dtype == jnp.float32
    in_bf16 = {k: v.astype(jnp.bfloat16) for k, v in _EXTEND.init_state().items()}
    with pytest.raises(TypeError, match=r"state\['running_mean1'\] must have dtype float32"):
        _EXTEND.predict(params, x, in_bf16, compute_dtype="bfloat16")
    with pytest.raises(TypeError, match=r"must have dtype float64.*computing in float64"):
        _EXTEND.predict(params, x, _EXTEND.init_state(), compute_dtype="float64")


# --- batch-sharded inputs, on 4 forced CPU devices ------------------------------------

# Every zoo network, small; each is built inside the subprocess from its expression.
SHARDED_NETS = {
    "two-layer": "zoo.two_layer_net(20, 8, 4)",
    "multi-layer": "zoo.network([7, 6], 'sigmoid', weight_decay=0.1, input_size=20, output_size=4)",
    "multi-layer-extend": (
        "zoo.network([7, 6], batch_norm=True, dropout=0.3, input_size=20, output_size=4)"
    ),
    "simple-convnet": "zoo.simple_convnet_net((1, 10, 10), 3, 3, 5, 4, weight_init_std=0.3)",
    "simple-convnet-nchw": (
        "zoo.simple_convnet_net((1, 10, 10), 3, 3, 5, 4, weight_init_std=0.3, layout='NCHW')"
    ),
    "deep-convnet": "zoo.deep_convnet_net((1, 12, 12), filters=(3, 4, 5), hidden_size=6)",
}

# Each network's gradients (and new layer state) on x and t sharded over the batch
# of a 4-device mesh, against one device's: both axis types; eagerly, the rules through
# jax.grad and the explicit sweep, and jax.grad under jit. One process builds every
# network from its expression and prints, per network and case, its largest error
# relative to the largest entry of the one-device result (the biases before batch
# norm have a zero gradient, so their float32 values are rounding noise), or the error
# it raised.
_SHARDED_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from funcbp import zoo

def error(got, want):
    scale = max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(want))
    return max(float(jnp.max(jnp.abs(g - w))) for g, w in
               zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)) / scale

meshes = {"explicit": jax.make_mesh((4,), ("batch",)),  # JAX's default axis type
          "auto": jax.make_mesh((4,), ("batch",), axis_types=(AxisType.Auto,))}
report = {"default_is_explicit": meshes["explicit"].axis_types == (AxisType.Explicit,)}

def cases(net):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (8, *net.input_shape)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 4, 8), jnp.int32)
    params, state = net.init(jax.random.key(0)), net.init_state()
    key = jax.random.key(1)
    run = {m: lambda p, x, t, s, m=m: net.value_and_grad(p, x, t, s, key=key, method=m)
           for m in ("manual", "backprop")}
    run["jit"] = jax.jit(run["manual"])
    (_, want_state), want = run["jit"](params, x, t, state)
    out = {}
    for axes, mesh in meshes.items():
        for how in ("manual", "backprop", "jit"):  # eagerly, both sweeps; under jit
            try:
                with jax.set_mesh(mesh):
                    batch, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
                    xs, ts = jax.device_put(x, batch), jax.device_put(t, batch)
                    ps, ss = jax.device_put((params, state), replicated)
                    (_, new_state), grads = run[how](ps, xs, ts, ss)
                out[f"{axes}/{how}"] = {"grads": error(grads, want),
                                        "state": error(new_state, want_state) if state else 0.0}
            except Exception as e:
                out[f"{axes}/{how}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return out

for name, expression in json.loads(sys.argv[1]).items():
    report[name] = cases(eval(expression))
print(json.dumps(report))
"""

_SHARDED_REPORT: dict = {}  # the one process's report, or why there is none


def _sharded_report():
    if not _SHARDED_REPORT:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _SHARDED_SCRIPT, json.dumps(SHARDED_NETS)],
                env=four_cpu_devices_env(), capture_output=True, text=True, timeout=500,
            )  # fmt: skip
            ok = proc.returncode == 0
            _SHARDED_REPORT["report"] = (
                json.loads(proc.stdout.strip().splitlines()[-1]) if ok else proc.stderr[-3000:]
            )
        except BaseException as e:  # the next test reports it instead of running again
            _SHARDED_REPORT["report"] = f"no report: {type(e).__name__}: {e}"
            raise
    report = _SHARDED_REPORT["report"]
    if isinstance(report, str):
        pytest.fail(report)
    assert report["default_is_explicit"]
    return report


# The first test waits for every network's cases (about two minutes of CPU).
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", SHARDED_NETS)
def test_batch_sharded_gradients_equal_one_devices(name):
    out = _sharded_report()[name]
    assert len(out) == 6  # 2 axis types x (2 sweeps eagerly, 1 under jit)
    failed = [f"{case}: {r}" for case, r in out.items() if isinstance(r, str)]
    assert not failed, "\n".join(failed)
    for case, r in out.items():
        assert r["grads"] < 1e-5 and r["state"] < 1e-5, (case, r)
