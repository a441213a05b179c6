"""Batch norm, dropout and weight decay against the book's NumPy classes, and at their edges."""

import inspect
import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import book_numpy, norm, reference
from tests.cases import bad_input_test, four_cpu_devices_env
from tests.cases import rng as _rng
from tests.cases import vjp as _vjp


def _bn_args(x_shape, d, seed=0):
    rng = _rng(seed)
    return (
        2 * rng.standard_normal(x_shape) + 1,
        rng.standard_normal(d),
        rng.standard_normal(d),
        rng.standard_normal(d),
        rng.uniform(0.5, 2.0, d),
    )


# --- batch norm against the book ---------------------------------------------------


@pytest.mark.parametrize("x_shape", [(6, 4), (4, 2, 3, 3)], ids=["2-D", "4-D"])
def test_batch_norm_train_matches_the_book(x_shape):
    x, gamma, beta, mean, var = _bn_args(x_shape, int(np.prod(x_shape[1:])))
    book = book_numpy.BatchNormalization(gamma, beta, 0.9, mean.copy(), var.copy())
    want = book.forward(x, train_flg=True)
    dout = _rng(1).standard_normal(x_shape)
    want_dx = book.backward(dout)
    stats_cotangent = (np.ones_like(mean), np.ones_like(var))  # ignored by the rule

    (out, stats), grads = _vjp(
        norm.batch_norm, (x, gamma, beta, mean, var), (dout, stats_cotangent)
    )
    chex.assert_trees_all_close(out, want, rtol=1e-12, atol=1e-14)
    chex.assert_trees_all_close(stats, (book.running_mean, book.running_var), rtol=1e-14)
    chex.assert_trees_all_close(
        grads[:3], (want_dx, book.dgamma, book.dbeta), rtol=1e-10, atol=1e-13
    )
    chex.assert_trees_all_equal(grads[3:], (np.zeros_like(mean), np.zeros_like(var)))


def test_batch_norm_eval_mode_takes_an_empty_batch():
    # Eval mode needs no batch statistics, so N = 0 gives an empty out; train mode refuses it.
    x, gamma, beta, mean, var = _bn_args((0, 4), 4)
    out, stats = norm.batch_norm(x, gamma, beta, mean, var, train=False)
    assert out.shape == (0, 4)
    chex.assert_trees_all_equal(stats, (mean, var))


def test_batch_norm_eval_forward_matches_the_book_and_keeps_the_running_stats():
    x, gamma, beta, mean, var = _bn_args((4, 2, 3, 3), 18)
    book = book_numpy.BatchNormalization(gamma, beta, 0.9, mean, var)
    out, (new_mean, new_var) = norm.batch_norm(x, gamma, beta, mean, var, train=False)
    chex.assert_trees_all_close(out, book.forward(x, train_flg=False), rtol=1e-13)
    chex.assert_trees_all_equal((new_mean, new_var), (mean, var))


def test_batch_norm_eval_backward_is_dout_gamma_over_std_where_the_books_is_stale():
    x, gamma, beta, mean, var = _bn_args((5, 3), 3)
    dout = _rng(1).standard_normal((5, 3))
    _, (dx, dgamma, dbeta, *_) = _vjp(
        lambda *a: norm.batch_norm(*a, train=False)[0], (x, gamma, beta, mean, var), dout
    )
    std = np.sqrt(var + norm.BATCH_NORM_EPS)
    chex.assert_trees_all_close(dx, dout * gamma / std, rtol=1e-14)
    chex.assert_trees_all_close(dgamma, np.sum(dout * (x - mean) / std, 0), rtol=1e-13)
    chex.assert_trees_all_close(dbeta, dout.sum(0), rtol=1e-14)
    # The book's backward after a train step and an eval forward returns the train-mode dx.
    book = book_numpy.BatchNormalization(gamma, beta, 0.9, mean, var)
    book.forward(x, train_flg=True)
    book.forward(x, train_flg=False)
    assert not np.allclose(book.backward(dout), dx)


def test_running_stats_follow_the_books_updates_over_steps():
    x, gamma, beta, mean, var = _bn_args((6, 4), 4)
    book = book_numpy.BatchNormalization(gamma, beta, 0.9, mean.copy(), var.copy())
    step = jax.jit(lambda x, mean, var: norm.batch_norm(x, gamma, beta, mean, var)[1])
    for seed in range(3):
        x = _rng(seed).standard_normal((6, 4))
        book.forward(x)
        mean, var = step(x, mean, var)
    chex.assert_trees_all_close((mean, var), (book.running_mean, book.running_var), rtol=1e-13)


def test_per_channel_is_the_book_on_pixels_as_rows_in_both_layouts():
    rng = _rng()
    x = rng.standard_normal((4, 3, 2, 2))
    gamma, beta, mean, var = rng.standard_normal((4, 3))
    var = np.abs(var)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 3)  # (N*H*W, C): the book normalizes columns
    book = book_numpy.BatchNormalization(gamma, beta, 0.9, mean.copy(), var.copy())
    want = book.forward(rows).reshape(4, 2, 2, 3)
    dout = rng.standard_normal((4, 2, 2, 3))
    want_dx = book.backward(dout.reshape(-1, 3)).reshape(4, 2, 2, 3)

    def per_channel(axis):
        return lambda *a: norm.batch_norm(*a, axis=axis)[0]

    to_nchw = (0, 3, 1, 2)
    out, grads = _vjp(per_channel(1), (x, gamma, beta, mean, var), dout.transpose(to_nchw))
    out_nhwc, grads_nhwc = _vjp(
        per_channel(-1), (x.transpose(0, 2, 3, 1), gamma, beta, mean, var), dout
    )
    chex.assert_trees_all_close(out, want.transpose(to_nchw), rtol=1e-12)
    chex.assert_trees_all_close(out_nhwc, want, rtol=1e-12)
    expected = (want_dx, book.dgamma, book.dbeta)
    chex.assert_trees_all_close(
        (grads[0].transpose(0, 2, 3, 1), *grads[1:3]), expected, rtol=1e-10, atol=1e-13
    )
    chex.assert_trees_all_close(grads_nhwc[:3], expected, rtol=1e-10, atol=1e-13)


def test_batch_norm_mean_term_is_what_makes_a_constant_shift_invisible():
    # out does not change when every row moves by the same c, so dx sums to 0 per feature.
    x, gamma, beta, mean, var = _bn_args((5, 3), 3)
    _, (dx, *_) = _vjp(
        lambda *a: norm.batch_norm(*a)[0],
        (x, gamma, beta, mean, var),
        _rng(2).standard_normal((5, 3)),
    )
    chex.assert_trees_all_close(dx.sum(0), np.zeros(3), atol=1e-13)


def test_eval_mode_before_any_training_is_about_1000_times_too_large():
    # The book's running_var starts at 0, so eval divides by sqrt(0 + 1e-6), as its docstring says.
    x = _rng().standard_normal((4, 3))
    zeros, ones = np.zeros(3), np.ones(3)
    out, _ = norm.batch_norm(x, ones, zeros, zeros, zeros, train=False)
    chex.assert_trees_all_close(out, x / np.sqrt(norm.BATCH_NORM_EPS), rtol=1e-14)
    assert np.all(np.abs(out) > 900 * np.abs(x))


# --- dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_dropout_mask_is_uniform_above_rate_and_matches_the_book(make_key):
    x = _rng().standard_normal((4, 5))
    key = make_key(3)
    mask = np.asarray(jax.random.uniform(key, x.shape) > 0.3)
    book = book_numpy.Dropout(0.3)
    dout = _rng(1).standard_normal(x.shape)
    out, (dx, _) = _vjp(lambda x, k: norm.dropout(x, k, 0.3), (x, key), dout)
    chex.assert_trees_all_equal(out, book.forward(x, mask=mask))
    chex.assert_trees_all_equal(dx, book.backward(dout))
    assert 0 < mask.sum() < mask.size
    chex.assert_trees_all_equal(norm.dropout(x, key, 0.3), out)  # same key, same mask
    assert not np.array_equal(norm.dropout(x, make_key(4), 0.3), out)


def test_dropout_eval_and_inverted():
    x = _rng().standard_normal((4, 5))
    key = jax.random.key(0)
    mask = np.asarray(jax.random.uniform(key, x.shape) > 0.25)
    chex.assert_trees_all_close(
        norm.dropout(x, key, 0.25, train=False),
        book_numpy.Dropout(0.25).forward(x, train_flg=False),
    )
    chex.assert_trees_all_close(norm.dropout(x, key, 0.25, inverted=True), x * mask / 0.75)
    chex.assert_trees_all_equal(norm.dropout(x, key, 0.25, train=False, inverted=True), x)
    grads = jax.grad(lambda x: jnp.sum(norm.dropout(x, None, 0.25, train=False)))(x)
    chex.assert_trees_all_close(grads, np.full(x.shape, 0.75))


def test_dropout_eval_mode_takes_no_key_and_train_mode_refuses_none():
    x = jnp.ones(3)
    chex.assert_trees_all_close(norm.dropout(x, None, train=False), 0.5 * x)
    with pytest.raises(TypeError, match=r"key must be a PRNG key .* in train mode, got None"):
        norm.dropout(x, None)


# --- weight decay ----------------------------------------------------------------------


@pytest.mark.parametrize("container", [tuple, list, dict])
def test_weight_decay_is_half_lambda_sum_of_squares_with_gradient_lambda_w(container):
    rng = _rng()
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))]
    weights = (
        dict(zip(["W1", "W2"], arrays, strict=True)) if container is dict else container(arrays)
    )
    value, grads = jax.value_and_grad(norm.weight_decay)(weights, 0.1)
    np.testing.assert_allclose(value, 0.05 * sum(np.sum(w**2) for w in arrays), rtol=1e-14)
    assert type(grads) is container
    chex.assert_trees_all_close(jax.tree.leaves(grads), [0.1 * w for w in arrays], rtol=1e-14)
    # Scaled by the incoming dout, as the book's lam * W is scaled by the loss's 1.
    chex.assert_trees_all_close(
        jax.grad(lambda w: 3 * norm.weight_decay(w, 0.1))(weights),
        jax.tree.map(lambda g: 3 * g, grads),
    )


# --- transformations -----------------------------------------------------------------


def _bn_dropout_loss(layers, train):
    def loss(gamma, beta, x, key):
        stats = (jnp.zeros_like(gamma), jnp.ones_like(gamma))
        out, _ = layers.batch_norm(x, gamma, beta, *stats, train=train)
        return jnp.sum(layers.dropout(out, key, 0.5, train) ** 2)

    return loss


def test_jit_vmap_of_grad_and_float32():
    rng = _rng()
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    x = rng.standard_normal((4, 5, 3))  # 4 examples, each a batch of 5
    keys = jax.random.split(jax.random.key(0), 4)
    per_example = jax.jit(jax.vmap(jax.grad(_bn_dropout_loss(norm, True)), (None, None, 0, 0)))
    want = jax.jit(jax.vmap(jax.grad(_bn_dropout_loss(reference, True)), (None, None, 0, 0)))
    assert per_example(gamma, beta, x, keys).shape == (4, 3)
    chex.assert_trees_all_close(per_example(gamma, beta, x, keys), want(gamma, beta, x, keys))

    f32 = [jnp.asarray(a, jnp.float32) for a in (gamma, beta, x[0])]
    grads = jax.jit(jax.grad(_bn_dropout_loss(norm, False), argnums=(0, 1, 2)))(*f32, None)
    assert [g.dtype for g in grads] == [jnp.float32] * 3


# --- the rules called directly, as an explicit backprop sweep calls them -----------------


X, GAMMA, BETA, MEAN, VAR = _bn_args((4, 2, 2, 3), 3)
DOUT = _rng(1).standard_normal(X.shape)
DIRECT = {
    # name: (layer, args, cotangent for bwd, the same for jax.vjp, gradients to compare)
    "batch_norm": (
        norm.batch_norm,
        (X, GAMMA, BETA, MEAN, VAR, True, 0.9, -1),
        (DOUT, None),  # the new running stats' cotangent is ignored, so None will do
        (DOUT, (np.zeros(3), np.zeros(3))),
        3,
    ),
    "dropout": (norm.dropout, (X, jax.random.key(0), 0.5), DOUT, DOUT, 1),
    "dropout eval, no key": (norm.dropout, (X, None, 0.5, False), DOUT, DOUT, 1),
    "weight_decay": (norm.weight_decay, ({"W1": GAMMA, "W2": X}, 0.1), 2.0, 2.0, 1),
}


@pytest.mark.parametrize("case", DIRECT)
def test_fwd_and_bwd_called_directly_agree_with_vjp(case):
    fn, args, cotangent, vjp_cotangent, compared = DIRECT[case]
    # The static args found as a training engine finds them: the primal's
    # signature with its defaults, and nondiff_argnums.
    bound = inspect.signature(fn.fun).bind(*args)
    bound.apply_defaults()
    static = [bound.args[i] for i in fn.nondiff_argnums]
    dynamic = [a for i, a in enumerate(bound.args) if i not in fn.nondiff_argnums]
    out, res = fn.fwd(*bound.args)
    grads = fn.bwd(*static, res, cotangent)
    assert len(grads) == len(dynamic)
    assert all(g is None for g in grads[compared:])  # keys, rates, running statistics

    def with_static(*dynamic):
        args = list(dynamic)
        for i, value in zip(fn.nondiff_argnums, static, strict=True):
            args.insert(i, value)
        return fn(*args)

    want_out, pullback = jax.vjp(with_static, *dynamic)
    chex.assert_trees_all_close(out, want_out)
    chex.assert_trees_all_close(grads[:compared], pullback(vjp_cotangent)[:compared])


# --- bad input ------------------------------------------------------------------------

X4 = jnp.ones((4, 2, 3, 3))
P18 = jnp.ones(18)
BN4 = (X4, P18, P18, P18, P18)

BAD_INPUTS = [
    (
        "bn stats length 4-D",
        lambda: norm.batch_norm(X4, P18, P18, jnp.zeros(2), P18),
        ValueError,
        r"running_mean must have shape \(18,\), one entry per feature \(C\*H\*W\) of x of "
        r"shape \(4, 2, 3, 3\), got \(2,\)",
    ),
    (
        "bn gamma per channel",
        lambda: norm.batch_norm(*BN4, axis=1),
        ValueError,
        r"gamma must have shape \(2,\), one entry per feature \(C\)",
    ),
    (
        "bn 3-D x",
        lambda: norm.batch_norm(X4[0], *BN4[1:]),
        ValueError,
        r"x must have shape \(N, D\)",
    ),
    ("bn empty batch", lambda: norm.batch_norm(X4[:0], *BN4[1:]), ValueError, r"N >= 1"),
    ("bn batch axis", lambda: norm.batch_norm(*BN4, axis=0), ValueError, "axis 0 is the batch"),
    (
        "bn axis 4",
        lambda: norm.batch_norm(*BN4, axis=4),
        ValueError,
        "axis must name a feature axis",
    ),
    (
        "bn float axis",
        lambda: norm.batch_norm(*BN4, axis=1.0),
        TypeError,
        "axis must be None or a Python int",
    ),
    (
        "bn train 1",
        lambda: norm.batch_norm(*BN4, train=1),
        TypeError,
        "train must be a Python bool",
    ),
    (
        "bn momentum",
        lambda: norm.batch_norm(*BN4, momentum=1.5),
        ValueError,
        r"momentum must be in \[0.0, 1.0\]",
    ),
    (
        "bn momentum array",
        lambda: norm.batch_norm(*BN4, momentum=jnp.array(-0.5)),
        ValueError,
        r"momentum must be in \[0.0, 1.0\], got -0.5",
    ),
    (
        "bn int x",
        lambda: norm.batch_norm(X4.astype(int), *BN4[1:]),
        TypeError,
        "x must be a floating",
    ),
    (
        "bn mixed dtypes",
        lambda: norm.batch_norm(X4, P18.astype(jnp.float32), *BN4[2:]),
        TypeError,
        "must share one dtype",
    ),
    (
        "dropout rate 1",
        lambda: norm.dropout(X4, None, 1.0, False),
        ValueError,
        r"rate must be in \[0.0, 1.0\)",
    ),
    (
        "dropout rate -0.1",
        lambda: norm.dropout(X4, None, -0.1, False),
        ValueError,
        "rate must be in",
    ),
    (
        "dropout rate array 1",
        lambda: norm.dropout(X4, None, jnp.array(1.0), False),
        ValueError,
        r"rate must be in \[0.0, 1.0\), got 1.0",
    ),
    (
        "dropout rate vector",
        lambda: norm.dropout(X4, None, jnp.array([0.1, 0.2]), False),
        ValueError,
        r"rate must be a scalar, got an array of shape \(2,\)",
    ),
    (
        "dropout rate bool",
        lambda: norm.dropout(X4, None, True, False),
        TypeError,
        r"rate must be a real number \(a Python float or a scalar array\), got True",
    ),
    (
        "dropout rate str",
        lambda: norm.dropout(X4, None, "0.5", False),
        TypeError,
        r"rate must be an array or a number, got .0\.5. \(str\)",
    ),
    (
        "dropout rate complex",
        lambda: norm.dropout(X4, None, jnp.array(0.5 + 0j), False),
        TypeError,
        "rate must be a real number, got dtype complex",
    ),
    (
        "dropout rate nan",
        lambda: norm.dropout(X4, None, np.float32("nan"), False),
        ValueError,
        r"rate must be in \[0.0, 1.0\), got nan",
    ),
    (
        "dropout train str",
        lambda: norm.dropout(X4, None, 0.5, "no"),
        TypeError,
        "train must be a Python bool",
    ),
    (
        "dropout float key",
        lambda: norm.dropout(X4, jnp.ones(2)),
        TypeError,
        "key must be a PRNG key",
    ),
    (
        "dropout int x",
        lambda: norm.dropout(jnp.ones(3, int), jax.random.key(0)),
        TypeError,
        "x must be a floating",
    ),
    (
        "wd negative lam",
        lambda: norm.weight_decay([X4], -0.1),
        ValueError,
        r"lam must be in \[0.0, inf\)",
    ),
    (
        "wd negative lam array",
        lambda: norm.weight_decay([X4], jnp.array(-0.1)),
        ValueError,
        r"lam must be in \[0.0, inf\), got -0.1",
    ),
    (
        "wd infinite lam",
        lambda: norm.weight_decay([X4], float("inf")),
        ValueError,
        r"lam must be in \[0.0, inf\), got inf",
    ),
    (
        "wd empty",
        lambda: norm.weight_decay({}, 0.1),
        ValueError,
        "weights must hold at least one array",
    ),
    (
        "wd int W",
        lambda: norm.weight_decay({"W1": jnp.ones(2, int)}, 0.1),
        TypeError,
        r"weights\['W1'\] must be a floating",
    ),
    (
        "wd mixed dtypes",
        lambda: norm.weight_decay([P18, P18.astype(jnp.float32)], 0.1),
        TypeError,
        r"weights\[0\], weights\[1\] must share one dtype",
    ),
]


test_bad_input_raises_naming_the_argument = bad_input_test(BAD_INPUTS)


# --- hyperparameters as values ---------------------------------------------------------

W = {"W1": _rng().standard_normal((4, 3)), "b1": _rng(1).standard_normal(3)}
XB, TB = _rng(2).standard_normal((5, 4)), np.array([0, 2, 1, 1, 0])


def _decayed_loss(layers):
    def loss(params, lam):
        scores = layers.affine(XB, params["W1"], params["b1"])
        return layers.softmax_with_loss(scores, TB) + layers.weight_decay([params["W1"]], lam)

    return loss


LAMBDAS = [0.0, 0.01, 0.1, 1.0]


def test_vmap_over_lambda_gives_each_lambdas_gradient():
    loss = _decayed_loss(funcbp)
    batched = jax.jit(jax.vmap(lambda lam: jax.grad(loss)(W, lam)))(jnp.array(LAMBDAS))
    twins = jax.jit(jax.vmap(lambda lam: jax.grad(_decayed_loss(reference))(W, lam)))(
        jnp.array(LAMBDAS)
    )
    for i, lam in enumerate(LAMBDAS):
        one = jax.tree.map(lambda g, i=i: g[i], batched)
        chex.assert_trees_all_close(one, jax.grad(loss)(W, lam), rtol=1e-14, atol=1e-16)
    chex.assert_trees_all_close(batched, twins, rtol=1e-12, atol=1e-15)


RATES = [0.0, 0.2, 0.5, 0.9]


@pytest.mark.parametrize(
    ("train", "inverted"), [(True, False), (True, True), (False, False), (False, True)]
)
def test_vmap_over_rate_gives_each_rate_its_own_masks_and_scaling(train, inverted):
    x, key = _rng().standard_normal((4, 5)), jax.random.key(3)
    dout = _rng(1).standard_normal(x.shape)

    def layer(x, rate):
        return norm.dropout(x, key, rate, train, inverted)

    def pullback(x, rate):
        out, vjp = jax.vjp(layer, x, rate)
        return out, vjp(dout)[0]

    outs, dxs = jax.jit(jax.vmap(pullback, in_axes=(None, 0)))(x, jnp.array(RATES))
    draw = np.asarray(jax.random.uniform(key, x.shape))
    for i, rate in enumerate(RATES):
        out, dx = pullback(x, rate)  # eagerly: the same key, one rate alone
        # Equal to rounding: XLA may divide by a batched 1 - rate differently.
        chex.assert_trees_all_close((outs[i], dxs[i]), (out, dx), rtol=1e-15, atol=0)
        if train:
            chex.assert_trees_all_equal(outs[i] != 0, out != 0, draw > rate)
        else:
            chex.assert_trees_all_close(out, x if inverted else x * (1 - rate), rtol=1e-15)


def test_vmap_over_momentum_gives_each_momentums_running_statistics():
    x, gamma, beta, mean, var = _bn_args((6, 4), 4)
    momenta = [0.0, 0.5, 0.9, 1.0]

    def step(momentum):
        return norm.batch_norm(x, gamma, beta, mean, var, momentum=momentum)

    batched = jax.jit(jax.vmap(step))(jnp.array(momenta))
    for i, momentum in enumerate(momenta):
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], batched), step(momentum))
    chex.assert_trees_all_equal(batched[1][0][-1], jnp.asarray(mean))  # momentum 1 keeps it


def test_a_hyperparameter_takes_the_datas_dtype_and_gets_no_gradient():
    x32, key = jnp.asarray(_rng().standard_normal((3, 4)), jnp.float32), jax.random.key(0)
    rate = jnp.array(0.25)  # float64, against float32 activations
    assert norm.dropout(x32, key, rate).dtype == jnp.float32
    assert norm.dropout(x32, key, rate, train=False).dtype == jnp.float32
    chex.assert_trees_all_equal(norm.dropout(x32, key, rate), norm.dropout(x32, key, 0.25))
    assert norm.weight_decay([x32], jnp.array(0.1)).dtype == jnp.float32
    p32 = jnp.ones(4, jnp.float32)
    _, stats = norm.batch_norm(x32, p32, p32, p32, p32, momentum=jnp.array(0.8))
    assert [s.dtype for s in stats] == [jnp.float32] * 2
    # No cotangent flows into rate, lambda or momentum, in the rules or the twins.
    for module in (norm, reference):

        def dropped(rate, module=module):
            return jnp.sum(module.dropout(x32, key, rate))

        def running_mean(momentum, module=module):
            _, (mean, _) = module.batch_norm(x32, p32, p32, p32, p32, momentum=momentum)
            return jnp.sum(mean)

        assert jax.grad(dropped)(0.25) == 0
        assert jax.grad(module.weight_decay, argnums=1)([x32], 0.1) == 0
        assert jax.grad(running_mean)(0.8) == 0


def test_traced_flags_are_refused_by_name():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match=r"^train decides shapes or control flow"):
        jax.jit(lambda train: norm.dropout(X4, key, 0.5, train))(True)
    with pytest.raises(TypeError, match=r"^inverted decides shapes or control flow"):
        jax.jit(lambda inverted: norm.dropout(X4, key, inverted=inverted))(True)
    with pytest.raises(TypeError, match=r"^train decides shapes or control flow"):
        jax.vmap(lambda train: norm.batch_norm(*BN4, train=train)[0])(jnp.array([True, False]))
    with pytest.raises(TypeError, match=r"^axis decides shapes or control flow"):
        jax.jit(lambda axis: norm.batch_norm(*BN4, axis=axis)[0])(1)


# --- shard_map ---------------------------------------------------------------------------

SHARD_MAP_STEP = """
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

jax.config.update("jax_enable_x64", True)
import funcbp
from funcbp import reference

rng = np.random.default_rng(0)
shapes = {"W1": (6, 5), "gamma": (5,), "beta": (5,), "W2": (5, 3), "b2": (3,)}
params = {k: jnp.asarray(0.5 * rng.standard_normal(s)) for k, s in shapes.items()}
params["gamma"] = params["gamma"] + 1
x, t = jnp.asarray(rng.standard_normal((16, 6))), jnp.asarray(rng.integers(0, 3, 16))
stats = (jnp.zeros(5), jnp.ones(5))


def loss(layers, reduction):
    # Data parallel: params replicated, each device a quarter of the batch.
    def f(params, x, t, lam, key):
        h = layers.affine(x, params["W1"], None)  # no bias before batch norm
        h, _ = layers.batch_norm(h, params["gamma"], params["beta"], *stats, momentum=0.8)
        h = layers.dropout(layers.relu(h), key, 0.25, inverted=True)
        data = layers.softmax_with_loss(layers.affine(h, params["W2"], params["b2"]), t, reduction)
        if reduction == "mean":
            data = jax.lax.pmean(data, "batch")
        else:
            data = jax.lax.psum(jnp.sum(data), "batch") / x.shape[0]
        return data + layers.weight_decay((params["W1"], params["W2"]), lam)

    return f


out = {}
for axis_type in (AxisType.Explicit, AxisType.Auto):
    mesh = jax.make_mesh((4,), ("batch",), axis_types=(axis_type,))
    for reduction in ("mean", "sum", "none"):
        grads = []
        for layers in (funcbp, reference):
            step = jax.shard_map(
                jax.value_and_grad(loss(layers, reduction)),
                mesh=mesh,
                in_specs=(P(), P("batch"), P("batch"), P(), P()),
                out_specs=P(),
            )
            args = (params, x, t, jnp.asarray(0.1), jax.random.key(0))
            specs = (P(), P("batch"), P("batch"), P(), P())
            args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
            with jax.set_mesh(mesh):
                grads.append(jax.jit(step)(*args))
        (loss_rules, g_rules), (loss_twins, g_twins) = grads
        out[f"{axis_type.name}-{reduction}"] = {
            "loss": abs(float(loss_rules - loss_twins)) / float(loss_twins),
            **{
                k: float(jnp.max(jnp.abs(g_rules[k] - g_twins[k])) / jnp.max(jnp.abs(g_twins[k])))
                for k in params
            },
        }
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_shard_map_step_through_the_rules_equals_the_twins():
    # Params replicated (P()), the batch split over 4 devices, check_vma on: each rule's
    # cotangent for a replicated param is reduced over the batch axis, as JAX's own are.
    env = four_cpu_devices_env()
    proc = subprocess.run(
        [sys.executable, "-c", SHARD_MAP_STEP], env=env, capture_output=True, text=True, timeout=200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {
        f"{a}-{r}" for a in ("Explicit", "Auto") for r in ("mean", "sum", "none")
    }
    for case, errors in result.items():
        assert set(errors) == {"loss", "W1", "gamma", "beta", "W2", "b2"}, case
        assert max(errors.values()) < 1e-12, (case, errors)
