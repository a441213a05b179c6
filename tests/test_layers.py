"""The hand-written rules, checked over the layer table and at their edges."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

import funcbp
from funcbp import conv, layers, norm, reference
from funcbp.checks import LAYER_CHECKS

ROWS = {c.name: c for c in LAYER_CHECKS}
LAYER_NAMES = {*layers.__all__, *conv.__all__, *norm.__all__}
# The per-row variants below run on chapter 5's rows. The later layers' rows
# are checked jitted in both dtypes by test_checks, and against the book, under
# vmap and in float32 by test_conv and test_norm; these variants on them too
# would add a minute and a half on a 2-core CPU.
CHAPTER_5_CHECKS = tuple(c for c in LAYER_CHECKS if c.name in layers.__all__)


def _args(row, dtype=jnp.float64, seed=0):
    return row.make_args(np.random.default_rng(seed), dtype)


def _float_argnums(args):
    return tuple(i for i, a in enumerate(args) if jnp.issubdtype(jnp.result_type(a), jnp.floating))


def _scalar(fn, cotangent):
    return lambda *a: jnp.sum(fn(*a) * cotangent)


def test_table_covers_every_exported_layer():
    # A row named after each layer, and variants of it named layer_variant.
    assert set(ROWS) >= LAYER_NAMES
    for name in ROWS:
        assert name in LAYER_NAMES or any(name.startswith(f"{n}_") for n in LAYER_NAMES), name
    assert set(reference.__all__) == LAYER_NAMES
    for module in (layers, conv, norm):
        assert all(getattr(funcbp, name) is getattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("row", CHAPTER_5_CHECKS, ids=lambda c: c.name)
def test_forward_matches_reference(row):
    args = _args(row)
    chex.assert_trees_all_close(row.manual(*args), row.reference(*args), rtol=1e-12, atol=1e-14)


class ManualVsAutodiffTest(chex.TestCase):
    """Every row, eagerly and under jit (chex variants), against jax.grad of its twin."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters((c.name, c) for c in CHAPTER_5_CHECKS)
    def test_manual_grad_matches_autodiff(self, row):
        args = _args(row)
        argnums = _float_argnums(args)
        out = row.manual(*args)
        cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape))
        manual = self.variant(jax.grad(_scalar(row.manual, cotangent), argnums))(*args)
        auto = jax.grad(_scalar(row.reference, cotangent), argnums)(*args)
        chex.assert_trees_all_close(manual, auto, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("row", CHAPTER_5_CHECKS, ids=lambda c: c.name)
def test_matches_finite_differences(row, jit):
    args = _args(row)
    argnums = _float_argnums(args)
    fn = jax.jit(row.manual) if jit else row.manual
    fixed = {i: a for i, a in enumerate(args) if i not in argnums}

    def f(*diff_args):
        full = list(diff_args)
        for i in sorted(fixed):
            full.insert(i, fixed[i])
        return fn(*full)

    check_grads(f, tuple(args[i] for i in argnums), order=2, modes=("rev",), eps=1e-4)


@pytest.mark.parametrize("row", CHAPTER_5_CHECKS, ids=lambda c: c.name)
def test_float32_grad_stays_float32_and_agrees(row):
    args = _args(row, jnp.float32)
    argnums = _float_argnums(args)
    grads = jax.grad(lambda *a: jnp.sum(row.manual(*a)), argnums)(*args)
    auto = jax.grad(lambda *a: jnp.sum(row.reference(*a)), argnums)(*args)
    for g in grads:
        assert g.dtype == jnp.float32
    chex.assert_trees_all_close(grads, auto, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("row", CHAPTER_5_CHECKS, ids=lambda c: c.name)
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
        "affine 1-D x",
        lambda: funcbp.affine(jnp.ones(3), jnp.ones((3, 5)), jnp.ones(5)),
        ValueError,
        r"x must have shape \(N, \.\.\.\)",
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


@pytest.mark.parametrize(
    ("case", "call", "error", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_raises_naming_the_argument(case, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_input_raises_under_jit_and_grad_too():
    with pytest.raises(ValueError, match="W must have"):
        jax.jit(jax.grad(lambda W: jnp.sum(funcbp.affine(jnp.ones((2, 3)), W, jnp.ones(5)))))(
            jnp.ones((4, 5))
        )
