"""numerical_gradient and compare_gradients, including that they catch bad rules."""

import dataclasses
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import conv, norm, reference
from funcbp.checks import LAYER_CHECKS, _masked
from funcbp.gradcheck import ErrorStats, compare_gradients, numerical_gradient


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


def test_compare_gradients_reports_per_parameter_and_passes_a_correct_rule():
    rng = np.random.default_rng(0)
    params = {
        "W": jnp.asarray(rng.standard_normal((4, 3))),
        "b": jnp.asarray(rng.standard_normal(3)),
    }
    x, t = jnp.asarray(rng.standard_normal((5, 4))), jnp.array([0, 1, 2, 0, 1])

    def manual(p, x, t):
        return funcbp.softmax_with_loss(funcbp.affine(x, p["W"], p["b"]), t)

    def twin(p, x, t):
        return reference.softmax_with_loss(reference.affine(x, p["W"], p["b"]), t)

    report = compare_gradients(manual, twin, (params, x, t), argnums=0, name="net")
    assert report.ok and report.name == "net" and report.dtype == "float64"
    assert [a.name for a in report.arguments] == ["W", "b"]
    assert report.manual_vs_autodiff.max_abs < 1e-12
    assert report.manual_vs_numerical.max_rel < 1e-5
    assert report.to_dict()["manual_vs_numerical"]["ok"] is True


@jax.custom_vjp
def _leaky_relu_rule(x):
    return jnp.where(x <= 0, 0.0, x)


def _leaky_fwd(x):
    return _leaky_relu_rule(x), x


def _leaky_bwd(x, dout):
    return (dout,)  # forgets the mask


_leaky_relu_rule.defvjp(_leaky_fwd, _leaky_bwd)


@jax.custom_vjp
def _book_softmax_with_loss(x, t):
    return reference.softmax_with_loss(x, t)


def _book_fwd(x, t):
    return _book_softmax_with_loss(x, t), (jax.nn.softmax(x), t)


def _book_bwd(res, dout):
    y, t = res
    return (y - jax.nn.one_hot(t, y.shape[-1], dtype=y.dtype)) / y.shape[0], None  # ignores dout


_book_softmax_with_loss.defvjp(_book_fwd, _book_bwd)


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


def test_compare_gradients_catches_a_rule_that_forgets_the_mask():
    x = jnp.array([[-1.0, 0.5], [2.0, -0.3]])
    report = compare_gradients(_leaky_relu_rule, reference.relu, (x,))
    assert not report.ok
    assert report.manual_vs_autodiff.max_abs > 0.1
    assert report.manual_vs_numerical.max_abs > 0.1


def test_compare_gradients_catches_the_books_ignored_dout():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    t = jnp.array([0, 1, 3])
    report = compare_gradients(_book_softmax_with_loss, reference.softmax_with_loss, (x, t))
    assert not report.ok  # the random cotangent exposes it


def test_masked_row_catches_a_forward_that_is_nan_at_a_masked_logit():
    row = {c.name: c for c in LAYER_CHECKS}["masked_softmax_with_loss"]
    broken = dataclasses.replace(row, manual=_masked(_nan_on_masked_softmax_with_loss))
    assert row.run().ok
    report = broken.run()
    assert not report.ok
    # The rule is right; the nan loss shows in the finite differences.
    assert report.manual_vs_autodiff.ok and not report.manual_vs_numerical.ok


def test_compare_gradients_float32_uses_its_own_tolerance():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), jnp.float32)
    report = compare_gradients(funcbp.sigmoid, reference.sigmoid, (x,))
    assert report.ok and report.dtype == "float32"
    assert report.manual_vs_numerical.max_abs > 1e-9  # float32 rounding is visible


def test_compare_gradients_refuses_no_floating_argument():
    with pytest.raises(ValueError, match="at least one floating-point argument"):
        compare_gradients(jnp.sum, jnp.sum, (jnp.arange(3),))


def test_error_stats_definitions():
    s = ErrorStats.between(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.5]), rtol=0.1, atol=0.0)
    assert s.max_abs == 0.5 and s.mean_abs == 0.25 and s.max_rel == pytest.approx(0.2)
    assert not s.ok
    assert not ErrorStats.between(jnp.array([np.nan]), jnp.array([np.nan]), 1, 1).ok


# --- broken rules for the later layers ---------------------------------------------


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


def test_compare_gradients_catches_a_col2im_that_drops_the_overlap_sum():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((3, 2, 2, 2)), np.zeros(3)

    def check(stride):
        return compare_gradients(
            partial(_conv_col2im_overwrites, stride=stride),
            partial(reference.convolution, stride=stride),
            (x, W, b),
        )

    report = check(stride=1)  # 2x2 windows a step apart overlap
    assert not report.ok
    assert [a.name for a in report.arguments if not a.ok] == ["x"]
    assert report.manual_vs_autodiff.max_abs > 0.1
    assert check(stride=2).ok  # windows side by side: nothing to sum, the rule is right


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


def test_compare_gradients_catches_batch_norm_without_its_mean_term():
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((5, 3)), *rng.standard_normal((3, 3)), np.ones(3))
    report = compare_gradients(
        lambda *a: _batch_norm_without_mean_term(*a, True)[0],
        lambda *a: reference.batch_norm(*a)[0],
        args,
        argnums=(0, 1, 2),
    )
    assert not report.ok
    assert [a.ok for a in report.arguments] == [False, True, True]  # x wrong; gamma, beta right


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


def test_compare_gradients_catches_pooling_that_sends_ties_to_every_maximum():
    # Integer values tie often; where they do, the book's dout goes to the first maximum only.
    x = np.random.default_rng(0).integers(0, 3, (2, 2, 4, 4)).astype(float)
    broken = compare_gradients(_pooling_ties_to_every_maximum, reference.pooling, (x,))
    assert not broken.manual_vs_autodiff.ok
    # At a tie the function has no derivative, so finite differences fail either way;
    # the twin's reduce_window also picks the first maximum, and the rule agrees with it.
    assert compare_gradients(conv.pooling, reference.pooling, (x,)).manual_vs_autodiff.ok
