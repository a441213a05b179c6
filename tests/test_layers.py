"""The hand-written rules, checked over the layer table and at their edges."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import conv, layers, norm, reference
from funcbp.checks import LAYER_CHECKS
from tests.cases import bad_input_test

ROWS = {c.name: c for c in LAYER_CHECKS}
LAYER_NAMES = {*layers.__all__, *conv.__all__, *norm.__all__}
# Rows that check a chapter-5 layer at an edge, through a wrapper, and the layer they run.
EDGE_ROWS = {"masked_softmax_with_loss": "softmax_with_loss"}
# Every row's backward rule, in float64 and float32, is checked by
# tests/test_checks.py::test_every_row_passes_every_comparison through
# funcbp.testing.assert_rule: against jax.grad of the twin for a random cotangent,
# against central differences, second order, eager against jit, under vmap, the
# cotangents' shapes and dtypes, and linearity. This file adds the forward against
# the twin and the cotangent scaling on chapter 5's rows and their other forms
# (affine_no_bias, softmax_with_loss_none, ...), and the named edges below.
CHAPTER_5_CHECKS = tuple(c for c in LAYER_CHECKS if c.name in {*layers.__all__, *EDGE_ROWS})
FORMS = tuple(
    c
    for c in LAYER_CHECKS
    if c not in CHAPTER_5_CHECKS and any(c.name.startswith(f"{n}_") for n in layers.__all__)
)


def _args(row, dtype=jnp.float64, seed=0):
    return row.make_args(np.random.default_rng(seed), dtype)


def _float_argnums(args):
    return tuple(i for i, a in enumerate(args) if jnp.issubdtype(jnp.result_type(a), jnp.floating))


def _scalar(fn, cotangent):
    return lambda *a: jnp.sum(fn(*a) * cotangent)


def _rules_run(fn, args):
    """The names of the custom_vjp functions that ``fn`` calls."""
    eqns = jax.make_jaxpr(fn)(*args).eqns
    return {
        e.params["call_jaxpr"].jaxpr.debug_info.func_name
        for e in eqns
        if e.primitive.name == "custom_vjp_call"
    }


def test_table_covers_every_exported_layer():
    run = {row.name: _rules_run(row.manual, _args(row)) for row in LAYER_CHECKS}
    # Every exported layer's own rule runs in some row, and nothing else does.
    assert set().union(*run.values()) == LAYER_NAMES
    # Each row runs the layer it is named after: the layer, a variant layer_variant,
    # or an edge row; pooling_relu_ties runs relu first.
    for name, rules in run.items():
        named = EDGE_ROWS.get(name) or next(n for n in rules if name.split("_")[0] in n)
        assert named in rules and (name == named or name.startswith(named) or name in EDGE_ROWS)
    assert set(reference.__all__) == LAYER_NAMES
    for module in (layers, conv, norm):
        assert all(getattr(funcbp, name) is getattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("row", CHAPTER_5_CHECKS + FORMS, ids=lambda c: c.name)
def test_forward_matches_reference(row):
    args = _args(row)
    chex.assert_trees_all_close(row.manual(*args), row.reference(*args), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("row", CHAPTER_5_CHECKS + FORMS, ids=lambda c: c.name)
def test_cotangent_scaling(row):
    args = _args(row)
    argnums = _float_argnums(args)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(row.manual(*args).shape))
    once = jax.grad(_scalar(row.manual, cotangent), argnums)(*args)
    thrice = jax.grad(_scalar(row.manual, 3 * cotangent), argnums)(*args)
    chex.assert_trees_all_close(thrice, jax.tree.map(lambda g: 3 * g, once), rtol=1e-12)


def test_per_example_gradients_with_vmap():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4, 3)))
    W = jnp.asarray(np.random.default_rng(1).standard_normal((3, 5)))
    b = jnp.zeros(5)
    t = jnp.array([[0, 1, 2, 3]] * 6)

    def loss(W, b, x, t):
        return funcbp.softmax_with_loss(funcbp.relu(funcbp.affine(x, W, b)), t)

    def ref(W, b, x, t):
        return reference.softmax_with_loss(reference.relu(reference.affine(x, W, b)), t)

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, None, 0, 0)))(W, b, x, t)
    expected = jax.jit(jax.vmap(jax.grad(ref), in_axes=(None, None, 0, 0)))(W, b, x, t)
    assert per_example.shape == (6, 3, 5)
    chex.assert_trees_all_close(per_example, expected, rtol=1e-10, atol=1e-13)


def test_hessian_by_reverse_over_reverse():
    x = jnp.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.4]])
    t = jnp.array([2, 0])

    def hess(f):
        return jax.jit(jax.jacrev(jax.grad(lambda x: f(funcbp.sigmoid(x), t))))(x)

    chex.assert_trees_all_close(
        hess(funcbp.softmax_with_loss), hess(reference.softmax_with_loss), rtol=1e-10
    )
    chex.assert_trees_all_close(
        jax.jit(jax.hessian(lambda x: funcbp.softmax_with_loss(x, t)))(x),
        jax.jit(jax.hessian(lambda x: reference.softmax_with_loss(x, t)))(x),
        rtol=1e-10,
        atol=1e-14,
    )


def test_forward_mode_is_refused_with_a_type_error():
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(funcbp.relu, (jnp.ones(3),), (jnp.ones(3),))


def test_scan_and_checkpoint_compose():
    W = jnp.eye(3) * 0.5

    def body(h, _):
        return funcbp.sigmoid(funcbp.affine(h, W, jnp.zeros(3))), None

    def f(h, body):
        return jnp.sum(jax.lax.scan(body, h, None, length=4)[0])

    def ref_body(h, _):
        return reference.sigmoid(reference.affine(h, W, jnp.zeros(3))), None

    h = jnp.ones((2, 3))
    expected = jax.grad(f)(h, ref_body)
    chex.assert_trees_all_close(jax.grad(f)(h, body), expected, rtol=1e-12)
    chex.assert_trees_all_close(jax.grad(f)(h, jax.checkpoint(body)), expected, rtol=1e-12)


# --- named edges ------------------------------------------------------------


def test_relu_gradient_at_exactly_zero_is_zero():
    g = jax.grad(lambda x: jnp.sum(funcbp.relu(x)))(jnp.array([-1.0, 0.0, 1.0]))
    chex.assert_trees_all_equal(g, jnp.array([0.0, 0.0, 1.0]))


def test_relu_does_not_touch_dout():
    dout = jnp.array([5.0, 6.0, 7.0])
    _, vjp = jax.vjp(funcbp.relu, jnp.array([-1.0, 0.0, 2.0]))
    (dx,) = vjp(dout)
    chex.assert_trees_all_equal(dx, jnp.array([0.0, 0.0, 7.0]))
    chex.assert_trees_all_equal(dout, jnp.array([5.0, 6.0, 7.0]))


def test_sigmoid_saturates_without_nan():
    x = jnp.array([-1000.0, 1000.0], jnp.float32)
    y, g = funcbp.sigmoid(x), jax.grad(lambda x: jnp.sum(funcbp.sigmoid(x)))(x)
    chex.assert_trees_all_equal(y, jnp.array([0.0, 1.0], jnp.float32))
    chex.assert_trees_all_equal(g, jnp.zeros(2, jnp.float32))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_huge_logits_give_finite_loss_and_gradient(dtype):
    x = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype)
    t = jnp.array([1, 1])
    loss, g = jax.value_and_grad(funcbp.softmax_with_loss)(x, t)
    chex.assert_tree_all_finite((loss, g))
    np.testing.assert_allclose(loss, 1e4, rtol=1e-6)
    chex.assert_trees_all_close(g, jnp.array([[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], dtype), atol=1e-6)


def test_one_hot_and_index_labels_agree():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4)))
    t = jnp.array([0, 3, 1, 1, 2])
    one_hot = jax.nn.one_hot(t, 4, dtype=x.dtype)
    for layer, arg in [
        (funcbp.softmax_with_loss, x),
        (funcbp.cross_entropy_error, funcbp.softmax(x)),
    ]:
        by_index = jax.value_and_grad(layer)(arg, t)
        by_one_hot = jax.value_and_grad(layer)(arg, one_hot)
        chex.assert_trees_all_close(by_index, by_one_hot, rtol=1e-14)


def test_label_smoothing_rows_give_the_cross_entropy_the_rule_differentiates():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    t = 0.9 * jax.nn.one_hot(jnp.array([0, 1, 2]), 4, dtype=x.dtype) + 0.1 / 4
    y = jax.nn.softmax(x)
    for layer, twin, arg, log_y in [
        (funcbp.softmax_with_loss, reference.softmax_with_loss, x, jax.nn.log_softmax(x)),
        (funcbp.cross_entropy_error, reference.cross_entropy_error, y, jnp.log(y + 1e-7)),
    ]:
        loss, g = jax.value_and_grad(layer)(arg, t)
        np.testing.assert_allclose(loss, -jnp.sum(t * log_y) / 3, rtol=1e-12)
        chex.assert_trees_all_close(g, jax.grad(twin)(arg, t), rtol=1e-12)


def test_softmax_with_loss_gradient_is_book_formula():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4)))
    t = jnp.array([0, 3, 1, 1, 2])
    y = jax.nn.softmax(x)
    expected = (y - jax.nn.one_hot(t, 4, dtype=x.dtype)) / 5
    chex.assert_trees_all_close(jax.grad(funcbp.softmax_with_loss)(x, t), expected, rtol=1e-12)


def test_one_dimensional_input_is_a_batch_of_one():
    x = jnp.array([0.3, 2.9, 4.0])
    t = jnp.array([0.0, 0.0, 1.0])
    loss, g = jax.value_and_grad(funcbp.softmax_with_loss)(x, t)
    batch_loss, batch_g = jax.value_and_grad(funcbp.softmax_with_loss)(x[None], t[None])
    np.testing.assert_allclose(loss, batch_loss)
    assert g.shape == (3,)
    chex.assert_trees_all_close(g, batch_g[0])
    assert jax.grad(funcbp.cross_entropy_error)(funcbp.softmax(x), jnp.array(2)).shape == (3,)


def test_no_gradient_flows_into_labels():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    t = jax.nn.one_hot(jnp.array([0, 1, 2]), 4, dtype=x.dtype)
    chex.assert_trees_all_equal(
        jax.grad(funcbp.softmax_with_loss, argnums=1)(x, t), jnp.zeros_like(t)
    )


def test_affine_on_4d_input_keeps_its_shape():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 1, 4, 4)))
    W, b = jnp.asarray(rng.standard_normal((16, 3))), jnp.asarray(rng.standard_normal(3))
    out = funcbp.affine(x, W, b)
    assert out.shape == (2, 3)
    dout = jnp.asarray(rng.standard_normal((2, 3)))
    dx, dW, db = jax.vjp(funcbp.affine, x, W, b)[1](dout)
    assert dx.shape == x.shape
    chex.assert_trees_all_close(dx, (dout @ W.T).reshape(x.shape))
    chex.assert_trees_all_close(dW, x.reshape(2, 16).T @ dout)
    chex.assert_trees_all_close(db, dout.sum(0))


# --- reductions ---------------------------------------------------------------

LOSSES = [
    (funcbp.softmax_with_loss, lambda x: x),
    (funcbp.cross_entropy_error, funcbp.softmax),  # takes probabilities
]


@pytest.mark.parametrize(("loss", "inputs"), LOSSES, ids=["softmax_with_loss", "cross_entropy"])
def test_reductions_are_the_per_example_losses_and_their_mean_and_sum(loss, inputs):
    rng = np.random.default_rng(0)
    x = inputs(jnp.asarray(rng.standard_normal((5, 4))))
    t = jnp.array([0, 3, 1, 1, 2])
    per_example = loss(x, t, "none")
    assert per_example.shape == (5,)
    one_by_one = jnp.stack([loss(x[n], t[n]) for n in range(5)])
    chex.assert_trees_all_close(per_example, one_by_one, rtol=1e-14)
    chex.assert_trees_all_close(loss(x, t), jnp.mean(per_example), rtol=1e-14)
    chex.assert_trees_all_close(loss(x, t, reduction="sum"), jnp.sum(per_example), rtol=1e-14)
    # "none"'s cotangent is a vector: example n's gradient is scaled by v[n] alone.
    v = jnp.asarray(rng.standard_normal(5))
    _, pullback = jax.vjp(lambda x: loss(x, t, "none"), x)
    (dx,) = pullback(v)
    rows = [jax.grad(loss)(x[n], t[n]) * v[n] for n in range(5)]
    chex.assert_trees_all_close(dx, jnp.stack(rows), rtol=1e-12, atol=1e-15)
    chex.assert_trees_all_close(
        jax.grad(lambda x: loss(x, t, "sum"))(x), 5 * jax.grad(loss)(x, t), rtol=1e-12
    )


def test_unreduced_loss_of_one_example_is_a_scalar():
    x, t = jnp.array([0.3, 2.9, 4.0]), jnp.array(2)
    loss = funcbp.softmax_with_loss(x, t, "none")
    assert loss.shape == ()
    chex.assert_trees_all_close(loss, funcbp.softmax_with_loss(x, t), rtol=1e-15)
    assert jax.grad(funcbp.cross_entropy_error)(funcbp.softmax(x), t, "none").shape == (3,)


def test_per_example_losses_weighted_as_influence_or_reweighting_uses_them():
    # A weighted mean is a "none" loss times weights; its gradient takes each weight.
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    t, w = jnp.array([0, 2, 1, 1]), jnp.array([0.0, 1.0, 2.0, 0.5])

    def weighted(x, module):
        return jnp.sum(w * module.softmax_with_loss(x, t, "none"))

    chex.assert_trees_all_close(
        jax.grad(weighted)(x, funcbp), jax.grad(weighted)(x, reference), rtol=1e-12
    )
    assert not jnp.any(jax.grad(weighted)(x, funcbp)[0])  # weight 0: no gradient


# --- affine's forms -------------------------------------------------------------


def test_affine_on_one_example_is_the_books_5_6_1():
    # X = np.random.rand(2), W = np.random.rand(2, 3), B = np.random.rand(3)
    rng = np.random.default_rng(0)
    x, W, b = (jnp.asarray(rng.random(s)) for s in [(2,), (2, 3), (3,)])
    out = funcbp.affine(x, W, b)
    assert out.shape == (3,)
    chex.assert_trees_all_close(out, np.dot(x, W) + b, rtol=1e-15)
    dout = jnp.asarray(rng.standard_normal(3))
    dx, dW, db = jax.vjp(funcbp.affine, x, W, b)[1](dout)
    batch = jax.vjp(funcbp.affine, x[None], W, b)[1](dout[None])
    assert dx.shape == (2,) and dW.shape == (2, 3) and db.shape == (3,)
    chex.assert_trees_all_close((dx, dW, db), (batch[0][0], *batch[1:]), rtol=1e-15)
    chex.assert_trees_all_close(dW, np.outer(x, dout), rtol=1e-15)


def test_affine_without_bias_has_no_db():
    rng = np.random.default_rng(0)
    x, W = jnp.asarray(rng.standard_normal((4, 2, 3))), jnp.asarray(rng.standard_normal((6, 5)))
    out, pullback = jax.vjp(funcbp.affine, x, W, None)
    chex.assert_trees_all_close(out, x.reshape(4, 6) @ W, rtol=1e-15)
    dout = jnp.asarray(rng.standard_normal((4, 5)))
    dx, dW, db = pullback(dout)
    assert db is None
    chex.assert_trees_all_close(dx, (dout @ W.T).reshape(x.shape), rtol=1e-15)
    chex.assert_trees_all_close(dW, x.reshape(4, 6).T @ dout, rtol=1e-15)
    assert funcbp.affine(x[0, 0], W[:3], None).shape == (5,)  # one example, no bias


# --- broken rules the new rows catch ----------------------------------------------


def _rule(fwd, bwd, nondiff_argnums=()):
    fn = jax.custom_vjp(lambda *a: fwd(*a)[0], nondiff_argnums=nondiff_argnums)
    fn.defvjp(fwd, bwd)
    return fn


def _none_with_summed_dout(x, t):
    # Each example's dout replaced by their sum: right for "sum", wrong for "none".
    fwd = partial(layers._softmax_with_loss_fwd, reduction="none")
    return _rule(fwd, lambda res, dout: layers._softmax_with_loss_bwd("sum", res, dout.sum()))(x, t)


def _sum_with_the_means_rule(y, t):
    fwd = partial(layers._cross_entropy_error_fwd, reduction="sum")
    return _rule(fwd, partial(layers._cross_entropy_error_bwd, "mean"))(y, t)


def _single_example_dw_without_dout(x, W, b):
    # dW = outer(x, 1): right only for a cotangent of ones, as the book's dout=1.
    def bwd(res, dout):
        dx, _, db = layers._affine_bwd(res, dout)
        return dx, jnp.outer(res[0], jnp.ones_like(dout)), db

    return _rule(layers._affine_fwd, bwd)(x, W, b)


BROKEN = {
    "softmax_with_loss_none": _none_with_summed_dout,
    "cross_entropy_error_sum": _sum_with_the_means_rule,
    "affine_single_example": _single_example_dw_without_dout,
}


@pytest.mark.parametrize("name", BROKEN)
def test_new_rows_catch_a_broken_rule(name):
    row = ROWS[name]
    broken = dataclasses.replace(row, manual=BROKEN[name])
    assert row.run().ok
    report = broken.run()
    assert {"vs_autodiff", "vs_numerical"} <= set(report.failed)


# --- static arguments -------------------------------------------------------------


def test_a_traced_static_argument_is_refused_by_name():
    x = jnp.ones((2, 3))
    with pytest.raises(TypeError, match=r"stride decides shapes .* got a tracer of int"):
        jax.jit(lambda s: layers._static_int("stride", s, 1))(2)
    with pytest.raises(TypeError, match=r"^train decides shapes .* static Python value"):
        jax.jit(lambda flag: layers._static_bool("train", flag))(True)
    # Before custom_vjp sees it, which would say only UnexpectedTracerError.
    twice = layers._custom_vjp(lambda x, n: x * n, nondiff_argnums=(1,))
    twice.defvjp(lambda x, n: (x * n, None), lambda n, _, dout: (dout * n,))
    assert twice(x, 2).shape == (2, 3)
    with pytest.raises(TypeError, match=r"^n decides shapes or control flow"):
        jax.vmap(twice, in_axes=(None, 0))(x, jnp.arange(3))
    with pytest.raises(TypeError, match=r"^n decides shapes or control flow"):
        jax.jit(lambda n: twice(x, n=n))(2)


# --- no silent wrong answers ---------------------------------------------------


@dataclass(frozen=True)
class Returns:
    """The loss, and its gradient with respect to the first argument when given.

    ``twin_grad`` is jax.grad of the twin where it differs from the layer's
    rule: for rows of t that do not sum to 1, which the rule assumes they do.
    """

    value: float
    grad: Any = None
    twin_grad: Any = None
    dtype: Any = None  # by default, the dtype the row is run in


@dataclass(frozen=True)
class Raises:
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class Edge:
    """An input a layer must not answer silently wrong, and what comes instead.

    ``args(dtype)`` builds the arguments. ``expect`` is what comes eagerly.
    ``under_jit`` is what comes under jit where it differs: the checks of t's
    values need concrete labels and are off there, so t is used as given.
    """

    name: str
    layer: str  # the same name in funcbp.layers and funcbp.reference
    args: Callable[[Any], tuple]
    expect: Returns | Raises
    under_jit: Returns | Raises | None = None


_INF = float("inf")
# softmax([1, -inf, 0.5]): the masked class gets 0.
_P = np.exp([1.0, -_INF, 0.5]) / np.exp([1.0, -_INF, 0.5]).sum()
_MASKED = [[1.0, -_INF, 0.5]]

# Scores and probabilities with C = 10 classes, and labels with a bad row.
_X = np.random.default_rng(0).standard_normal((3, 10))
_Y = np.exp(_X) / np.exp(_X).sum(-1, keepdims=True)
_ONE_HOT = np.eye(3)[:2]  # two rows, C = 3


def _one_hot(t, classes):
    # As jax.nn.one_hot: an index outside 0..C-1 is a zero row.
    return (np.asarray(t)[..., None] == np.arange(classes)).astype(np.float64)


def _as_given(x, t):
    """softmax_with_loss with t's rows as they are.

    The loss is -sum(t log y) / N. The rule gives (y - t) / N; the exact
    derivative, which jax.grad of the twin gives, is (y sum(t) - t) / N.
    """
    xb, tb = np.atleast_2d(x), np.atleast_2d(t)
    log_y = xb - np.log(np.exp(xb).sum(-1, keepdims=True))
    n, y = len(xb), np.exp(log_y)
    loss = -np.sum(np.where(tb != 0, tb * log_y, 0)) / n
    rule, exact = (y - tb) / n, (y * tb.sum(-1, keepdims=True) - tb) / n
    return Returns(loss, rule.reshape(np.shape(x)), exact.reshape(np.shape(x)))


def _cross_entropy_as_given(y, t):
    """cross_entropy_error with t's rows as they are; its rule is the exact derivative."""
    return Returns(-np.sum(t * np.log(y + 1e-7)) / len(y), -t / (len(y) * (y + 1e-7)))


EDGES = [
    Edge(
        "masked logit, index label",
        "softmax_with_loss",
        lambda d: (jnp.array(_MASKED, d), jnp.array([0])),
        Returns(-np.log(_P[0]), [_P - [1, 0, 0]]),
    ),
    Edge(
        "masked logit, one-hot label",
        "softmax_with_loss",
        lambda d: (jnp.array(_MASKED, d), jnp.array([[1, 0, 0]], d)),
        Returns(-np.log(_P[0]), [_P - [1, 0, 0]]),
    ),
    Edge(
        # log 0: honest, and the gradient is the rule's finite (y - t) / N.
        "label on the masked logit",
        "softmax_with_loss",
        lambda d: (jnp.array(_MASKED, d), jnp.array([1])),
        Returns(_INF, [_P - [0, 1, 0]]),
    ),
    Edge(
        # Every class masked, so the label's too: log 0, as for one masked label.
        "every logit masked",
        "softmax_with_loss",
        lambda d: (jnp.array([[-_INF] * 3], d), jnp.array([1])),
        Returns(_INF, [[0.0, -1.0, 0.0]]),
    ),
    Edge(
        "every logit masked in one row of two",
        "softmax_with_loss",
        lambda d: (jnp.array([_MASKED[0], [-_INF] * 3], d), jnp.array([0, 2])),
        Returns(_INF, [(_P - [1, 0, 0]) / 2, [0.0, 0.0, -0.5]]),
    ),
    Edge(
        # inf - inf: no softmax. Refused when concrete; under jit its row is nan.
        "a +inf logit",
        "softmax_with_loss",
        lambda d: (jnp.array([[1.0, _INF, 0.5]], d), jnp.array([1])),
        Raises(ValueError, r"x must not hold \+inf, which has no softmax .*got \+inf at x\[0, 1\]"),
        Returns(np.nan, [[np.nan] * 3]),
    ),
    Edge(
        "a +inf logit, batch of one",
        "softmax_with_loss",
        lambda d: (jnp.array([0.0, _INF], d), jnp.array(0)),
        Raises(ValueError, r"got \+inf at x\[1\]"),
        Returns(np.nan, [np.nan] * 2),
    ),
    Edge(
        "index label C",
        "softmax_with_loss",
        lambda d: (jnp.array(_X, d), jnp.array([1, 2, 10])),
        Raises(ValueError, r"t must hold class indices in 0\.\.9 \(C = 10\), got 10 at t\[2\]"),
        _as_given(_X, _one_hot([1, 2, 10], 10)),  # a zero row: the row adds nothing
    ),
    Edge(
        "index label -1",
        "softmax_with_loss",
        lambda d: (jnp.array(_X, d), jnp.array([1, -1, 3])),
        Raises(ValueError, r"t must hold class indices in 0\.\.9 \(C = 10\), got -1 at t\[1\]"),
        _as_given(_X, _one_hot([1, -1, 3], 10)),
    ),
    Edge(
        "index label C, batch of one",
        "softmax_with_loss",
        lambda d: (jnp.array(_X[0], d), jnp.array(10)),
        Raises(ValueError, r"0\.\.9 \(C = 10\), got 10(?! at)"),
        _as_given(_X[0], _one_hot(10, 10)),
    ),
    Edge(
        "cross-entropy index label C",
        "cross_entropy_error",
        lambda d: (jnp.array(_Y, d), jnp.array([1, 2, 10])),
        Raises(ValueError, r"t must hold class indices in 0\.\.9 \(C = 10\), got 10 at t\[2\]"),
        _cross_entropy_as_given(_Y, _one_hot([1, 2, 10], 10)),
    ),
    Edge(
        "one-hot row summing to 2",
        "softmax_with_loss",
        lambda d: (jnp.array(_X[:2, :3], d), jnp.array([[1, 0, 0], [0, 1, 1]], d)),
        Raises(ValueError, r"t rows must sum to 1 .*got a row summing to 2\.0 at t\[1\]"),
        _as_given(_X[:2, :3], np.array([[1, 0, 0], [0, 1, 1]])),
    ),
    Edge(
        "one-hot negative entry",
        "softmax_with_loss",
        lambda d: (jnp.array(_X[:2, :3], d), jnp.array([[1, 0, 0], [0, 2, -1]], d)),
        Raises(ValueError, r"one-hot t must be non-negative, got -1\.0 at t\[1, 2\]"),
        _as_given(_X[:2, :3], np.array([[1, 0, 0], [0, 2, -1]])),
    ),
    Edge(
        "one-hot zero row",
        "softmax_with_loss",
        lambda d: (jnp.array(_X[:2, :3], d), jnp.array([[1, 0, 0], [0, 0, 0]], d)),
        Raises(ValueError, r"got a row summing to 0\.0 at t\[1\]"),
        _as_given(_X[:2, :3], np.array([[1, 0, 0], [0, 0, 0]])),
    ),
    Edge(
        "cross-entropy one-hot row summing to 2",
        "cross_entropy_error",
        lambda d: (jnp.array(_Y[:2, :3], d), jnp.array([[1, 0, 0], [0, 1, 1]], d)),
        Raises(ValueError, r"t rows must sum to 1 .*got a row summing to 2\.0 at t\[1\]"),
        _cross_entropy_as_given(_Y[:2, :3], np.array([[1, 0, 0], [0, 1, 1]])),
    ),
    Edge(
        "label smoothing is accepted",
        "softmax_with_loss",
        lambda d: (jnp.array(_X[:2, :3], d), jnp.array(0.9 * _ONE_HOT + 0.1 / 3, d)),
        _as_given(_X[:2, :3], 0.9 * _ONE_HOT + 0.1 / 3),
    ),
    Edge(
        "cross-entropy label smoothing is accepted",
        "cross_entropy_error",
        lambda d: (jnp.array(_Y[:2, :3], d), jnp.array(0.9 * _ONE_HOT + 0.1 / 3, d)),
        _cross_entropy_as_given(_Y[:2, :3], 0.9 * _ONE_HOT + 0.1 / 3),
    ),
    Edge(
        "empty batch, affine",
        "affine",
        lambda d: (jnp.ones((0, 3), d), jnp.ones((3, 2), d), jnp.ones(2, d)),
        Raises(ValueError, r"x must hold at least one example \(N >= 1\), got N = 0"),
    ),
    Edge(
        "empty batch, softmax_with_loss",
        "softmax_with_loss",
        lambda d: (jnp.ones((0, 3), d), jnp.ones(0, int)),
        Raises(ValueError, r"x must hold at least one example \(N >= 1\), got N = 0"),
    ),
    Edge(
        "empty batch, cross_entropy_error",
        "cross_entropy_error",
        lambda d: (jnp.ones((0, 3), d), jnp.ones((0, 3), d)),
        Raises(ValueError, r"y must hold at least one example \(N >= 1\), got N = 0"),
    ),
    Edge(
        "no classes",
        "softmax_with_loss",
        lambda d: (jnp.ones((2, 0), d), jnp.zeros(2, int)),
        Raises(ValueError, r"x must have at least one class \(C >= 1\), got C = 0"),
    ),
    Edge(
        "the book's mul(100, 2)",
        "mul",
        lambda d: (100, 2),
        Returns(200.0, dtype=jnp.result_type(float)),  # the default float
    ),
    Edge(
        "a Python int takes the other's dtype",
        "mul",
        lambda d: (jnp.asarray(100.0, d), 2),
        Returns(200.0, grad=2.0),
    ),
    Edge(
        "an integer array is refused",
        "add",
        lambda d: (jnp.array([100]), jnp.array([2.0], d)),
        Raises(TypeError, "x must be a floating-point array, got dtype int"),
    ),
]


@pytest.mark.parametrize("impl", [funcbp.layers, reference], ids=["layer", "twin"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("edge", EDGES, ids=[e.name for e in EDGES])
def test_no_silent_wrong_answer(edge, dtype, jit, impl):
    args = edge.args(dtype)
    expect = edge.under_jit if jit and edge.under_jit else edge.expect
    fn = getattr(impl, edge.layer)
    if isinstance(expect, Returns) and expect.grad is not None:
        fn = jax.value_and_grad(fn)
    fn = jax.jit(fn) if jit else fn
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match):
            fn(*args)
        return
    out = fn(*args)
    value, grad = out if expect.grad is not None else (out, None)
    rtol = 1e-6 if dtype == jnp.float32 else 1e-12
    assert value.dtype == (expect.dtype or dtype)
    np.testing.assert_allclose(value, expect.value, rtol=rtol)
    if grad is not None:
        expected = expect.grad
        if impl is reference and expect.twin_grad is not None:
            expected = expect.twin_grad
        assert grad.dtype == dtype and grad.shape == np.shape(expected)
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=rtol)


# --- bad input ----------------------------------------------------------------

BAD_INPUTS = [
    (
        "affine W rows",
        lambda: funcbp.affine(jnp.ones((2, 3)), jnp.ones((4, 5)), jnp.ones(5)),
        ValueError,
        r"W must have 3 rows.*got W of shape \(4, 5\)",
    ),
    (
        "affine b cols",
        lambda: funcbp.affine(jnp.ones((2, 3)), jnp.ones((3, 5)), jnp.ones(4)),
        ValueError,
        r"b must have shape \(5,\).*got \(4,\)",
    ),
    (
        "affine 0-D x",
        lambda: funcbp.affine(jnp.ones(()), jnp.ones((3, 5)), jnp.ones(5)),
        ValueError,
        r"x must have shape \(N, \.\.\.\) or \(D,\) for one example, got shape \(\)",
    ),
    (
        "affine one example, W rows",
        lambda: funcbp.affine(jnp.ones(3), jnp.ones((4, 5)), None),
        ValueError,
        r"W must have 3 rows to match x of shape \(3,\)",
    ),
    (
        "affine int x",
        lambda: funcbp.affine(jnp.ones((2, 3), int), jnp.ones((3, 5)), jnp.ones(5)),
        TypeError,
        "x must be a floating-point array, got dtype int",
    ),
    (
        "affine mixed dtypes",
        lambda: funcbp.affine(jnp.ones((2, 3), jnp.float32), jnp.ones((3, 5)), jnp.ones(5)),
        TypeError,
        "must share one dtype",
    ),
    (
        # Mixed precision is the network's cast, never a silent promotion in a layer.
        "affine bfloat16 x, float32 W and b",
        lambda: funcbp.affine(
            jnp.ones((2, 3), jnp.bfloat16), jnp.ones((3, 5), jnp.float32), jnp.ones(5, jnp.float32)
        ),
        TypeError,
        r"x, W, b must share one dtype, got x: bfloat16, W: float32, b: float32",
    ),
    (
        "affine no bias, mixed dtypes",
        lambda: funcbp.affine(jnp.ones((2, 3), jnp.float32), jnp.ones((3, 5)), None),
        TypeError,
        r"x, W must share one dtype, got x: float32, W: float64",
    ),
    (
        "affine b of ints",
        lambda: funcbp.affine(jnp.ones((2, 3)), jnp.ones((3, 5)), jnp.ones(5, int)),
        TypeError,
        "b must be a floating-point array",
    ),
    (
        "mul mixed dtypes",
        lambda: funcbp.mul(jnp.ones(3, jnp.float32), jnp.ones(3)),
        TypeError,
        r"x, y must share one dtype, got x: float32, y: float64",
    ),
    (
        "reduction unknown",
        lambda: funcbp.softmax_with_loss(jnp.ones((4, 3)), jnp.ones(4, int), "avg"),
        ValueError,
        r"reduction must be 'mean', 'sum' or 'none', got 'avg'",
    ),
    (
        "cross entropy reduction None",
        lambda: funcbp.cross_entropy_error(jnp.ones((4, 3)) / 3, jnp.ones(4, int), None),
        ValueError,
        r"reduction must be 'mean', 'sum' or 'none', got None",
    ),
    (
        "mul shapes",
        lambda: funcbp.mul(jnp.ones(3), jnp.ones(4)),
        ValueError,
        r"same shape, got \(3,\) and \(4,\)",
    ),
    (
        "add shapes",
        lambda: funcbp.add(jnp.ones((2, 1)), jnp.ones((2, 3))),
        ValueError,
        "same shape",
    ),
    ("relu int", lambda: funcbp.relu(jnp.arange(3)), TypeError, "x must be a floating-point"),
    (
        "labels shape",
        lambda: funcbp.softmax_with_loss(jnp.ones((4, 3)), jnp.ones(3, int)),
        ValueError,
        r"t must be one-hot with shape \(4, 3\) or class indices with shape \(4,\)",
    ),
    (
        "float indices",
        lambda: funcbp.softmax_with_loss(jnp.ones((4, 3)), jnp.ones(4)),
        TypeError,
        "must be an integer array",
    ),
    (
        "cross entropy 3-D",
        lambda: funcbp.cross_entropy_error(jnp.ones((1, 2, 3)), jnp.ones(1, int)),
        ValueError,
        r"y must have shape \(N, C\) or \(C,\)",
    ),
]


test_bad_input_raises_naming_the_argument = bad_input_test(BAD_INPUTS)


def test_bad_input_raises_under_jit_and_grad_too():
    with pytest.raises(ValueError, match="W must have"):
        jax.jit(jax.grad(lambda W: jnp.sum(funcbp.affine(jnp.ones((2, 3)), W, jnp.ones(5)))))(
            jnp.ones((4, 5))
        )


# --- plain softmax at the edges: what has no softmax is refused, not nan ------------------


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([[1.0, 0.5], [-_INF, -_INF]], r"a row of only -inf at x\[1\], which has no softmax"),
        ([-_INF, -_INF, -_INF], r"a row of only -inf, which has no softmax"),
        ([[1.0, _INF, 0.5]], r"x must not hold \+inf, which has no softmax .*at x\[0, 1\]"),
    ],
    ids=["a row all -inf", "a batch of one all -inf", "a +inf logit"],
)
def test_softmax_refuses_a_row_with_no_softmax_when_concrete(x, message):
    x = jnp.array(x, jnp.float64)
    with pytest.raises(ValueError, match=message):
        layers.softmax(x)
    assert np.isnan(np.asarray(jax.jit(layers.softmax)(x))).any()  # as documented under jit


def test_softmax_gives_a_masked_class_probability_0():
    np.testing.assert_allclose(layers.softmax(jnp.array(_MASKED, jnp.float64)), [_P], rtol=1e-12)
