"""numerical_gradient and compare_gradients: each comparison's verdict, and broken rules caught.

Each broken rule below is a mistake one makes writing custom_vjp rules; the tests
show which comparison names it and that the others pass.
"""

import dataclasses
import functools
import json
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import conv, layers, norm, reference
from funcbp.checks import LAYER_CHECKS, _masked
from funcbp.gradcheck import COMPARISONS, compare_gradients, format_report, numerical_gradient


def _normal(*shape, dtype=jnp.float64, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def _statuses(report):
    return {k: report[k].status for k in COMPARISONS}


# --- numerical_gradient -----------------------------------------------------


def test_numerical_gradient_of_a_quadratic_pytree():
    params = {"W": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -1.0])}

    def f(p):
        return jnp.sum(p["W"] ** 2) + jnp.sum(p["b"] ** 3)

    g = numerical_gradient(f, params)
    chex.assert_trees_all_close(g, {"W": 2 * params["W"], "b": 3 * params["b"] ** 2}, rtol=1e-7)


def test_numerical_gradient_is_jittable_and_keeps_dtype():
    x = jnp.array([0.3, -0.7], jnp.float32)
    g = jax.jit(lambda x: numerical_gradient(lambda v: jnp.sum(jnp.sin(v)), x, h=1e-2))(x)
    assert g.dtype == jnp.float32
    chex.assert_trees_all_close(g, jnp.cos(x), rtol=1e-3)


def test_numerical_gradient_refuses_integer_input():
    with pytest.raises(TypeError, match="x must hold floating-point arrays, got dtype int"):
        numerical_gradient(jnp.sum, jnp.arange(3))


# --- a correct rule: every comparison, its numbers and the report ------------------


def _net(p, x, t):
    return funcbp.softmax_with_loss(funcbp.affine(x, p["W"], p["b"]), t)


def _net_twin(p, x, t):
    return reference.softmax_with_loss(reference.affine(x, p["W"], p["b"]), t)


@functools.cache
def _net_report():
    params = {"W": _normal(4, 3), "b": _normal(3, seed=1)}
    args = (params, _normal(5, 4, seed=2), jnp.arange(5) % 3)
    return compare_gradients(_net, _net_twin, args, argnums=0, name="net")


def test_a_correct_rule_passes_every_comparison_per_parameter():
    report = _net_report()
    assert report.ok and report.failed == [] and report.name == "net"
    assert report.dtype == "float64" and [a.name for a in report.arguments] == ["W", "b"]
    for a in report.arguments:
        assert {k: c.status for k, c in a.comparisons.items()} == dict.fromkeys(COMPARISONS, "ok")
    assert report["vs_autodiff"].max_abs < 1e-12
    assert report["vs_numerical"].max_rel < 1e-6
    assert report["vs_numerical"].share <= 1 and report["vs_autodiff"].share <= 1


def test_the_report_holds_numbers_tolerances_and_settings():
    d = _net_report().to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON
    assert d["settings"]["mode"] == "full" and d["settings"]["seed"] == 0
    assert d["settings"]["h"] == 1e-5 and d["settings"]["coarse_h"] == 1e-4
    assert d["settings"]["dtype_policy"] == {
        "rule": "float64",
        "twin": "float64",
        "numerical": "float64",
        "note": "",
    }
    ad = d["arguments"][0]["comparisons"]["vs_autodiff"]
    assert set(ad["tolerance"]) == {"rtol", "atol", "scale"} and ad["ok"] is True
    num = d["comparisons"]["vs_numerical"]
    assert {"h", "truncation", "rounding_fd", "rounding_rule", "safety"} <= set(num["tolerance"])
    assert num["entries"] == 15  # W (4, 3) and b (3,), entry by entry
    text = format_report([_net_report()])
    assert text.splitlines()[1].split()[:4] == ["check", "argument", "vs", "autodiff"]
    assert "2nd order" in text and text.endswith("1/1 checks passed")


def test_float32_rules_have_float64_differences_and_float32_tolerances():
    x = _normal(3, 4, dtype=jnp.float32)
    report = compare_gradients(funcbp.sigmoid, reference.sigmoid, (x,))
    assert report.ok and report.dtype == "float32"
    assert report.settings["dtype_policy"]["numerical"] == "float64"
    assert "cast up from float32" in report.settings["dtype_policy"]["note"]
    assert report["vs_autodiff"].tolerance["rtol"] == pytest.approx(64 * 2.0**-23)
    assert report["vs_numerical"].max_abs > 1e-9  # float32 rounding shows, within its tolerance


# --- research scale: directional mode ---------------------------------------------


@jax.custom_vjp
def _affine_dW_off(x, W, b):
    return layers.affine(x, W, b)


def _affine_dW_off_bwd(res, dout):
    dx, dW, db = layers.affine.bwd(res, dout)
    return dx, 1.001 * dW, db  # off by 0.1%


_affine_dW_off.defvjp(layers.affine.fwd, _affine_dW_off_bwd)


def _mnist_affine(dtype):
    x, W = _normal(100, 784, dtype=dtype), _normal(784, 50, dtype=dtype, scale=0.01, seed=1)
    return x, W, _normal(50, dtype=dtype, seed=2)


def test_a_correct_float32_affine_of_100x784x50_passes_directionally():
    report = compare_gradients(funcbp.affine, reference.affine, _mnist_affine(jnp.float32))
    assert report.ok, format_report([report])
    assert report.settings["mode"] == "directional" and report.settings["directions"] == 4
    assert report["vs_numerical"].entries == 12  # 3 arguments x 4 directions


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_dW_off_by_a_tenth_of_a_percent_fails_against_autodiff(dtype):
    args = _mnist_affine(dtype)
    only_autodiff = dict(vmap=False, jit=False, second_order=False, numerical=False)
    report = compare_gradients(_affine_dW_off, reference.affine, args, **only_autodiff)
    assert report.failed == ["vs_autodiff"]
    assert [a.name for a in report.arguments if not a.ok] == ["W"]
    assert report["vs_autodiff"].max_rel == pytest.approx(1e-3, rel=0.01)


# --- broken rules, each caught by the comparison it breaks ------------------------


@jax.custom_vjp
def _tanh_ignores_dout(x):
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_ignores_dout_bwd(y, dout):
    return (1 - y**2,)  # the book's backward(dout=1)


_tanh_ignores_dout.defvjp(_tanh_fwd, _tanh_ignores_dout_bwd)


def _layer_norm_twin(x, gamma, beta):
    mu = jnp.mean(x, -1, keepdims=True)
    std = jnp.sqrt(jnp.mean((x - mu) ** 2, -1, keepdims=True) + 1e-5)
    return gamma[None] * (x - mu) / std + beta[None]


def _layer_norm_rule(drop_a_term):
    """A user's layer norm over the last axis; ``drop_a_term`` forgets dx's xn * mean(dxn xn)."""

    @jax.custom_vjp
    def layer_norm(x, gamma, beta):
        return _layer_norm_twin(x, gamma, beta)

    def fwd(x, gamma, beta):
        mu = jnp.mean(x, -1, keepdims=True)
        std = jnp.sqrt(jnp.mean((x - mu) ** 2, -1, keepdims=True) + 1e-5)
        xn = (x - mu) / std
        return gamma[None] * xn + beta[None], (xn, std, gamma)

    def bwd(res, dout):
        xn, std, gamma = res
        dxn = gamma[None] * dout
        dx = dxn - jnp.mean(dxn, -1, keepdims=True)
        if not drop_a_term:
            dx = dx - xn * jnp.mean(dxn * xn, -1, keepdims=True)
        return dx / std, jnp.sum(dout * xn, 0), jnp.sum(dout, 0)

    layer_norm.defvjp(fwd, bwd)
    return layer_norm


def _affine_bwd_with(dW=None, db=None):
    @jax.custom_vjp
    def affine(x, W, b):
        return layers.affine(x, W, b)

    def bwd(res, dout):
        dx, dW_, db_ = layers.affine.bwd(res, dout)
        return dx, dW(dW_) if dW else dW_, db(dout) if db else db_

    affine.defvjp(layers.affine.fwd, bwd)
    return affine


_ROWS = 4  # the batch size the NumPy kernel below takes from its closure


def _center_twin(x):
    return x - jnp.mean(x, 0, keepdims=True)


@jax.custom_vjp
def _center_numpy_bwd(x):
    return _center_twin(x)


def _numpy_center_bwd(dout):
    # Axis 0 is taken for the batch of _ROWS rows; under vmap it is vmap's axis.
    return dout - dout.sum(axis=0, keepdims=True) / _ROWS


def _center_bwd(_, dout):
    shape = jax.ShapeDtypeStruct(dout.shape, dout.dtype)
    return (jax.pure_callback(_numpy_center_bwd, shape, dout, vmap_method="broadcast_all"),)


_center_numpy_bwd.defvjp(lambda x: (_center_twin(x), None), _center_bwd)


@jax.custom_vjp
def _sigmoid_stopped(x):
    return layers.sigmoid(x)


def _sigmoid_stopped_fwd(x):
    y = layers.sigmoid(x)
    return y, y


def _sigmoid_stopped_bwd(y, dout):
    y = jax.lax.stop_gradient(y)  # right at first order, cut at second
    return (dout * y * (1 - y),)


_sigmoid_stopped.defvjp(_sigmoid_stopped_fwd, _sigmoid_stopped_bwd)


@jax.custom_vjp
def _relu_needs_concrete_dout(x):
    return layers.relu(x)


def _concrete_bwd(mask, dout):
    scale = float(jnp.abs(dout).max())  # a Python float: fine eagerly, not under jit
    return (jnp.where(mask, 0.0, dout / scale * scale),)


_relu_needs_concrete_dout.defvjp(layers.relu.fwd, _concrete_bwd)


def _f32(*shape, seed=0):
    return _normal(*shape, dtype=jnp.float32, seed=seed)


# name: (rule, twin, args, the comparisons that fail, the arguments they fail for)
BROKEN = {
    "ignores dout": (
        _tanh_ignores_dout,
        jnp.tanh,
        lambda: (_f32(4, 3),),
        ["vs_autodiff", "vs_numerical", "linearity", "second_order"],
        ["x"],
    ),
    "layer_norm drops a term of dx": (
        _layer_norm_rule(drop_a_term=True),
        _layer_norm_twin,
        lambda: (_f32(4, 5), _f32(5, seed=1), _f32(5, seed=2)),
        ["vs_autodiff", "vs_numerical", "second_order"],
        ["x", "gamma"],  # beta right; gamma at second order, through dx
    ),
    "float64 dW for a float32 W": (
        _affine_bwd_with(dW=lambda g: g.astype(jnp.float64)),
        reference.affine,
        lambda: (_f32(4, 6), _f32(6, 3, seed=1), _f32(3, seed=2)),
        ["cotangents"],
        ["W"],
    ),
    "db broadcast, not summed": (
        _affine_bwd_with(db=lambda dout: dout),
        reference.affine,
        lambda: (_f32(4, 6), _f32(6, 3, seed=1), _f32(3, seed=2)),
        ["cotangents"],
        ["b"],
    ),
    "wrong only under vmap": (
        _center_numpy_bwd,
        _center_twin,
        lambda: (_f32(_ROWS, 3),),
        ["vmap"],
        ["x"],
    ),
    "second order cut by stop_gradient": (
        _sigmoid_stopped,
        reference.sigmoid,
        lambda: (_f32(4, 3),),
        ["second_order"],
        ["x"],
    ),
    "needs concrete values": (
        _relu_needs_concrete_dout,
        reference.relu,
        lambda: (_f32(4, 3) + 0.5,),
        ["jit"],
        ["x"],
    ),
}


@functools.cache
def _broken_report(name):
    rule, twin, args, *_ = BROKEN[name]
    return compare_gradients(rule, twin, args(), name=name)


@pytest.mark.parametrize("name", BROKEN)
def test_each_broken_rule_fails_the_comparison_it_breaks(name):
    *_, failing, arguments = BROKEN[name]
    report = _broken_report(name)
    assert not report.ok
    assert report.failed == failing, format_report([report])
    assert [a.name for a in report.arguments if not a.ok] == arguments
    text = format_report([report])
    assert f"0/1 checks passed; failed: {name}" in text
    assert all(f"{k} FAILED" in text for k in failing)


def test_the_correct_layer_norm_passes_in_float32_and_float64():
    args = (_f32(4, 5), _f32(5, seed=1), _f32(5, seed=2))
    layer_norm = _layer_norm_rule(drop_a_term=False)
    for dtype in ("float32", "float64"):
        typed = tuple(a.astype(dtype) for a in args)
        report = compare_gradients(layer_norm, _layer_norm_twin, typed)
        assert report.ok, format_report([report])


def test_the_cotangent_reports_say_what_was_wrong():
    dW = _broken_report("float64 dW for a float32 W").argument("W")["cotangents"]
    assert dW.note == "the cotangent is float64[6,3] for an input of float32[6,3]"
    db = _broken_report("db broadcast, not summed")
    assert "output of type float32[4,3] corresponding to an input of type float32[3]" in (
        db.argument("b")["cotangents"].note
    )
    assert db.argument("x")["vs_autodiff"].status == "skipped"  # the VJP itself raised
    jit = _broken_report("needs concrete values").argument("x")["jit"]
    assert jit.status == "failed" and "ConcretizationTypeError" in jit.note


# --- kinks ------------------------------------------------------------------------


def test_relu_at_its_kink_is_reported_at_a_kink_not_failed():
    x = jnp.array([[-1.0, 0.0, 2.0], [0.0, 0.5, -0.3]])
    report = compare_gradients(funcbp.relu, reference.relu, (x,))
    num = report["vs_numerical"]
    assert report.ok and num.status == "kink" and num.kinks == 2
    assert num.note.startswith("x[0, 1], x[1, 0]: the differences straddle a kink")
    assert report["vs_autodiff"].status == "ok"
    assert "vs_numerical at a kink: x[0, 1], x[1, 0]" in format_report([report])


def test_kinks_move_moves_the_inputs_away_and_checks_there():
    x = jnp.array([[-1.0, 0.0, 2.0], [0.0, 0.5, -0.3]])
    report = compare_gradients(
        funcbp.relu, reference.relu, (x,), kinks="move", vmap=False, second_order=False
    )
    assert report["vs_numerical"].status == "ok" and report["vs_numerical"].kinks == 0
    assert report.settings["moved_entries"] == 2
    # A rule that forgets the mask still fails away from the kink.
    broken = compare_gradients(_leaky_relu_rule, reference.relu, (x,), kinks="move")
    assert "vs_numerical" in broken.failed and "vs_autodiff" in broken.failed


def test_pooling_ties_sit_at_kinks_and_a_rule_sending_dout_to_every_maximum_fails():
    # Integer values tie often; where they do, the book's dout goes to the first maximum only.
    x = np.random.default_rng(0).integers(0, 3, (2, 2, 4, 4)).astype(float)
    quick = dict(vmap=False, jit=False, second_order=False)
    correct = compare_gradients(conv.pooling, reference.pooling, (x,), **quick)
    assert correct.ok and correct["vs_numerical"].status == "kink"
    broken = compare_gradients(_pooling_ties_to_every_maximum, reference.pooling, (x,), **quick)
    assert "vs_autodiff" in broken.failed


@jax.custom_vjp
def _leaky_relu_rule(x):
    return jnp.where(x <= 0, 0.0, x)


def _leaky_fwd(x):
    return _leaky_relu_rule(x), x


def _leaky_bwd(x, dout):
    return (dout,)  # forgets the mask


_leaky_relu_rule.defvjp(_leaky_fwd, _leaky_bwd)


@jax.custom_vjp
def _pooling_ties_to_every_maximum(x):
    return conv.pooling(x)


def _every_max_fwd(x):
    out = conv.pooling(x)
    return out, (x, out)


def _every_max_bwd(res, dout):
    x, out = res

    def up(a):  # each 2x2 window's value over its four positions
        return jnp.repeat(jnp.repeat(a, 2, axis=2), 2, axis=3)

    return (jnp.where(x == up(out), up(dout), 0.0),)


_pooling_ties_to_every_maximum.defvjp(_every_max_fwd, _every_max_bwd)


# --- the book's and the later chapters' mistakes ----------------------------------


def test_a_rule_that_forgets_the_mask_fails_both_ways():
    x = jnp.array([[-1.0, 0.5], [2.0, -0.3]])
    report = compare_gradients(_leaky_relu_rule, reference.relu, (x,))
    assert report.failed == ["vs_autodiff", "vs_numerical"]  # dx = dout has no second order
    assert report["vs_autodiff"].max_abs > 0.1 and report["vs_numerical"].max_abs > 0.1


@jax.custom_vjp
def _book_softmax_with_loss(x, t):
    return reference.softmax_with_loss(x, t)


def _book_fwd(x, t):
    return _book_softmax_with_loss(x, t), (jax.nn.softmax(x), t)


def _book_bwd(res, dout):
    y, t = res
    return (y - jax.nn.one_hot(t, y.shape[-1], dtype=y.dtype)) / y.shape[0], None  # ignores dout


_book_softmax_with_loss.defvjp(_book_fwd, _book_bwd)


def test_the_books_ignored_dout_fails_against_the_random_cotangent_and_linearity():
    x, t = _normal(3, 4), jnp.array([0, 1, 3])
    quick = dict(vmap=False, jit=False, second_order=False)
    report = compare_gradients(
        _book_softmax_with_loss, reference.softmax_with_loss, (x, t), **quick
    )
    assert report.failed == ["vs_autodiff", "vs_numerical", "linearity"]


@jax.custom_vjp
def _nan_on_masked_softmax_with_loss(x, t):
    # The old forward: -sum(log_y * onehot) is -inf * 0 = nan at a masked logit.
    log_y = jax.nn.log_softmax(x)
    return -jnp.sum(log_y * jax.nn.one_hot(t, x.shape[-1], dtype=x.dtype)) / x.shape[0]


def _nan_fwd(x, t):
    return _nan_on_masked_softmax_with_loss(x, t), (jax.nn.softmax(x), t)


def _nan_bwd(res, dout):
    y, t = res
    return dout * (y - jax.nn.one_hot(t, y.shape[-1], dtype=y.dtype)) / y.shape[0], None


_nan_on_masked_softmax_with_loss.defvjp(_nan_fwd, _nan_bwd)


def test_masked_row_catches_a_forward_that_is_nan_at_a_masked_logit():
    row = {c.name: c for c in LAYER_CHECKS}["masked_softmax_with_loss"]
    broken = dataclasses.replace(row, manual=_masked(_nan_on_masked_softmax_with_loss))
    report = broken.run(second_order=False, vmap=False, jit="eager")  # 29 operations
    # The rule is right, and so is the loss under jit, where XLA turns -inf * 0 into a
    # select; eagerly the loss is nan, and the jit check sees the two differ.
    assert report.failed == ["jit"]
    assert report["jit"].note.startswith("the output differs eagerly: worst at []: nan")


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv_col2im_overwrites(x, W, b, stride):
    return conv.convolution(x, W, b, stride)


def _overwrite_fwd(x, W, b, stride):
    out, res = conv.convolution.fwd(x, W, b, stride, 0, "NCHW")
    return out, (res, W)


def _overwrite_bwd(stride, res, dout):
    res, W = res
    _, dW, db = conv.convolution.bwd(stride, 0, "NCHW", res, dout)
    fn, c, fh, fw = W.shape
    n, _, oh, ow = dout.shape
    dcol = dout.transpose(0, 2, 3, 1) @ W.reshape(fn, -1)  # the book's dcol, (C, FH, FW) columns
    dcol = dcol.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    dx = jnp.zeros((n, c, (oh - 1) * stride + fh, (ow - 1) * stride + fw), dout.dtype)
    for i in range(fh):
        for j in range(fw):
            # The book's col2im with = for +=: where windows overlap, the last one wins.
            window = (..., slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride))
            dx = dx.at[window].set(dcol[:, :, i, j])
    return dx, dW, db


_conv_col2im_overwrites.defvjp(_overwrite_fwd, _overwrite_bwd)


def test_a_col2im_that_drops_the_overlap_sum_fails_for_x_and_the_stride_passes_through():
    x, W, b = _normal(2, 2, 4, 4), _normal(3, 2, 2, 2, seed=1), jnp.zeros(3)
    # stride is a Python int: passed through as a static value, as nondiff_argnums needs.
    report = compare_gradients(_conv_col2im_overwrites, reference.convolution, (x, W, b, 1))
    assert report.argument("x").failed == ["vs_autodiff", "vs_numerical"]
    assert report.argument("W").failed == ["second_order"]  # d(dx)/dW is wrong too
    # Windows side by side: nothing to sum, the rule is right; stride as a keyword works too.
    assert compare_gradients(
        _conv_col2im_overwrites, reference.convolution, (x, W, b), kwargs={"stride": 2}
    ).ok


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _batch_norm_without_mean_term(x, gamma, beta, running_mean, running_var, train):
    return norm.batch_norm(x, gamma, beta, running_mean, running_var, train)


def _no_mean_fwd(x, gamma, beta, running_mean, running_var, train):
    return norm._batch_norm_fwd(x, gamma, beta, running_mean, running_var, train)


def _no_mean_bwd(train, res, cotangents):
    xn, std, gamma = res
    dout = cotangents[0]
    dxn = gamma[None, :] * dout
    dx = (dxn - xn * jnp.mean(dxn * xn, axis=0, keepdims=True)) / std  # no - mean(dxn)
    return dx, jnp.sum(xn * dout, axis=0), jnp.sum(dout, axis=0), None, None


_batch_norm_without_mean_term.defvjp(_no_mean_fwd, _no_mean_bwd)


def _batch_norm_args(dtype=jnp.float64):
    x, gamma, beta, mean = (
        _normal(5, 3, dtype=dtype),
        *(_normal(3, dtype=dtype, seed=s) for s in (1, 2, 3)),
    )
    return x, gamma, beta, mean, jnp.ones(3, dtype)


def test_batch_norm_is_checked_with_its_tuple_output_and_its_state_skipped():
    report = compare_gradients(
        norm.batch_norm, reference.batch_norm, _batch_norm_args(), argnums=(0, 1, 2)
    )
    assert report.ok, format_report([report])
    assert [a.name for a in report.arguments] == ["x", "gamma", "beta"]
    assert set(report.skipped_outputs) == {"[1][0]", "[1][1]"}  # the new running statistics
    assert "state" in report.skipped_outputs["[1][0]"]
    assert "output [1][0] not checked: state" in format_report([report])


def test_batch_norm_without_its_mean_term_fails_for_x_only():
    report = compare_gradients(
        _batch_norm_without_mean_term,
        reference.batch_norm,
        (*_batch_norm_args(), True),
        argnums=(0, 1, 2),
    )
    assert report.argument("x").failed == ["vs_autodiff", "vs_numerical", "second_order"]
    assert report.argument("gamma").failed == ["second_order"]  # through the wrong dx
    assert report.argument("beta").ok


def test_declared_state_outputs_and_integer_outputs_are_skipped_and_reported():
    report = compare_gradients(
        norm.batch_norm,
        reference.batch_norm,
        _batch_norm_args(),
        argnums=(0, 1, 2),
        state_outputs=["[1][0]", "[1][1]"],
        vmap=False,
        second_order=False,
    )
    assert report.ok and report.skipped_outputs["[1][1]"] == "declared state (state_outputs)"

    def with_argmax(f):
        return lambda x: (f(x), jnp.argmax(x, axis=1))

    report = compare_gradients(
        with_argmax(funcbp.sigmoid),
        with_argmax(reference.sigmoid),
        (_normal(3, 4),),
        second_order=False,
    )
    assert report.ok and "integer output (int" in report.skipped_outputs["[1]"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_16_bit_affine_is_checked_against_its_twin_in_float32(dtype):
    args = (_normal(4, 6, dtype=dtype), _normal(6, 5, dtype=dtype, seed=1), _normal(5, dtype=dtype))
    report = compare_gradients(funcbp.affine, reference.affine, args)
    assert report.ok, format_report([report])
    policy = report.settings["dtype_policy"]
    assert (report.dtype, policy["twin"], policy["numerical"]) == (dtype, "float32", "float64")
    eps = float(jnp.finfo(dtype).eps)
    assert report["vs_autodiff"].tolerance["rtol"] == pytest.approx(4 * eps)
    assert all(a["cotangents"].ok for a in report.arguments)  # dx, dW, db stay 16-bit


# --- options ----------------------------------------------------------------------


def test_full_mode_checks_a_subset_and_directional_mode_checks_directions():
    args = (_normal(4, 6), _normal(6, 5, seed=1), _normal(5, seed=2))
    quick = dict(vmap=False, jit=False, second_order=False, linearity=False)
    sub = compare_gradients(funcbp.affine, reference.affine, args, mode="full", subset=3, **quick)
    assert sub.ok and sub.settings["entries"] == 9 and sub["vs_numerical"].entries == 9
    again = compare_gradients(funcbp.affine, reference.affine, args, mode="full", subset=3, **quick)
    assert again.to_dict() == sub.to_dict()  # one seed, one report
    along = compare_gradients(
        funcbp.affine, reference.affine, args, mode="directional", directions=2, seed=5, **quick
    )
    assert along.ok and along.settings["mode"] == "directional" and along.settings["seed"] == 5
    assert along["vs_numerical"].entries == 6
    assert along.argument("W")["vs_numerical"].entries == 2


def test_each_comparison_switches_off():
    x = (_normal(3, 4),)
    off = dict(
        numerical=False,
        vmap=False,
        jit=False,
        cotangents=False,
        linearity=False,
        second_order=False,
    )
    report = compare_gradients(funcbp.sigmoid, reference.sigmoid, x, **off)
    assert _statuses(report) == {"vs_autodiff": "ok", **dict.fromkeys(COMPARISONS[1:], "skipped")}
    assert report.settings["comparisons"] == ["vs_autodiff"]
    assert "switched off: vs_numerical, vmap, jit, cotangents, linearity, second_order" in (
        format_report([report])
    )


def test_without_a_twin_the_rule_is_checked_against_itself_and_finite_differences():
    report = compare_gradients(funcbp.sigmoid, None, (_normal(3, 4),))
    assert report.ok
    assert report["vs_autodiff"].status == "skipped" and report["second_order"].status == "skipped"
    assert report["vs_numerical"].status == "ok" and report["vmap"].status == "ok"


def test_a_twin_that_raises_fails_vs_autodiff_with_its_error():
    def bad_twin(x):
        raise RuntimeError("no twin today")

    report = compare_gradients(funcbp.sigmoid, bad_twin, (_normal(3, 4),), second_order=False)
    assert report.failed == ["vs_autodiff"]
    assert report["vs_autodiff"].note == "the twin raised RuntimeError: no twin today"


def test_without_x64_the_differences_are_taken_in_float32_and_the_report_says_so():
    jax.config.update("jax_enable_x64", False)
    try:
        x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), jnp.float32)
        report = compare_gradients(funcbp.sigmoid, reference.sigmoid, (x,), vmap=False)
    finally:
        jax.config.update("jax_enable_x64", True)
    assert report.ok, format_report([report])
    policy = report.settings["dtype_policy"]
    assert policy["numerical"] == "float32" and report.settings["h"] == 1e-2
    assert (
        policy["note"]
        == "finite differences in float32: float64 needs jax_enable_x64, which is off"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fast"}, "mode must be 'auto', 'full' or 'directional', got 'fast'"),
        ({"kinks": "ignore"}, "kinks must be 'report' or 'move', got 'ignore'"),
        ({"directions": 0}, "directions must be a positive int, got 0"),
        ({"subset": 2.5}, "subset must be a positive int, got 2.5"),
        ({"h": -1e-3}, "h must be a positive number, got -0.001"),
        ({"argnums": 1}, r"argnums must name floating-point arguments, got 1 \(int"),
        ({"argnums": 5}, r"argnums must name arguments 0..1 not in nondiff_argnums, got 5"),
        ({"nondiff_argnums": (7,)}, r"nondiff_argnums must name arguments 0..1, got 7"),
        ({"state_outputs": ["[3]"]}, r"state_outputs must name floating output leaves"),
    ],
)
def test_bad_options_raise_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        compare_gradients(
            layers.softmax_with_loss,
            reference.softmax_with_loss,
            (_normal(3, 4), jnp.array([0, 1, 2])),
            **options,
        )


def test_no_floating_argument_is_refused():
    with pytest.raises(ValueError, match="at least one floating-point array argument"):
        compare_gradients(jnp.sum, jnp.sum, (jnp.arange(3),))
