"""Convolution, pooling and transpose against the book's NumPy classes, and at their edges."""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import book_numpy, conv, reference
from tests.cases import bad_input_test
from tests.cases import rng as _rng
from tests.cases import vjp as _vjp

# --- against the book ---------------------------------------------------------

CONV_CASES = {
    # name: (x shape, W shape, stride, pad)
    "stride 2 pad 1 non-square": ((2, 3, 7, 8), (4, 3, 3, 2), 2, 1),
    "pad 2 > filter - 1": ((1, 2, 4, 3), (2, 2, 2, 3), 1, 2),
    # Windows that do not overlap: col2im interleaves instead of summing.
    "2x2 stride 2 pad 1, no overlap": ((1, 2, 4, 6), (3, 2, 2, 2), 2, 1),
    "1x1 stride 2, gaps between windows": ((2, 3, 5, 7), (4, 3, 1, 1), 2, 0),
    # One channel: im2col takes its column offsets first, then its row offsets.
    "one channel, 3x5 stride 2 pad 1": ((2, 1, 7, 9), (3, 1, 3, 5), 2, 1),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_matches_the_book(case):
    x_shape, w_shape, stride, pad = CONV_CASES[case]
    rng = _rng()
    x, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    book = book_numpy.Convolution(W, b, stride, pad)
    want = book.forward(x)
    dout = rng.standard_normal(want.shape)
    want_dx = book.backward(dout)

    out, (dx, dW, db) = _vjp(lambda *a: conv.convolution(*a, stride, pad), (x, W, b), dout)
    chex.assert_trees_all_close((out, dx, dW, db), (want, want_dx, book.dW, book.db), rtol=1e-12)
    chex.assert_trees_all_close(
        reference.convolution(x, W, b, stride, pad), want, rtol=1e-12, atol=1e-14
    )


POOL_CASES = {
    # name: (x, pool_h, pool_w, stride)
    "2x2 stride 2": (_rng(1).standard_normal((2, 3, 4, 6)), 2, 2, 2),
    "3x3 stride 2, overlapping": (_rng(2).standard_normal((2, 2, 7, 5)), 3, 3, 2),
    "2x2 stride 3, gaps between windows": (_rng(3).standard_normal((2, 2, 8, 5)), 2, 2, 3),
    # After a ReLU most windows tie at 0; np.argmax picks the first.
    "ties after relu": (np.maximum(_rng(4).standard_normal((2, 2, 6, 6)) - 0.8, 0), 2, 2, 2),
    "integer ties": (_rng(5).integers(0, 3, (2, 2, 4, 4)).astype(float), 2, 2, 1),
}


@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_matches_the_book(case):
    x, pool_h, pool_w, stride = POOL_CASES[case]
    book = book_numpy.Pooling(pool_h, pool_w, stride)
    want = book.forward(x)
    dout = _rng().standard_normal(want.shape)
    out, (dx,) = _vjp(lambda x: conv.pooling(x, pool_h, pool_w, stride), (x,), dout)
    chex.assert_trees_all_equal(out, want)
    chex.assert_trees_all_close(dx, book.backward(dout), rtol=1e-14)
    chex.assert_trees_all_equal(reference.pooling(x, pool_h, pool_w, stride), want)


def test_pooling_with_pad_is_the_book_on_a_zero_padded_input():
    # The book's Pooling computes OH without the pad and fails; funcbp pads with
    # zeros as the book's im2col does, i.e. pools np.pad(x).
    x = _rng().standard_normal((2, 2, 4, 4)) - 1.0  # mostly negative: the zeros win at the border
    with pytest.raises(ValueError, match="reshape"):
        book_numpy.Pooling(2, 2, 2, pad=1).forward(x)
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    book = book_numpy.Pooling(2, 2, 2)
    want = book.forward(padded)
    dout = _rng(1).standard_normal(want.shape)
    out, (dx,) = _vjp(lambda x: conv.pooling(x, 2, 2, 2, 1), (x,), dout)
    assert out.shape == (2, 2, 3, 3)
    chex.assert_trees_all_equal(out, want)
    chex.assert_trees_all_close(dx, book.backward(dout)[:, :, 1:-1, 1:-1], rtol=1e-14)


def test_im2col_and_col2im_match_the_books_helpers():
    rng = _rng()
    x = rng.standard_normal((2, 3, 7, 6))
    col = book_numpy.im2col(x, 3, 2, 2, 1)
    chex.assert_trees_all_equal(conv.im2col(x, 3, 2, 2, 1), col)
    dcol = rng.standard_normal(col.shape)
    chex.assert_trees_all_close(
        conv.col2im(dcol, x.shape, 3, 2, 2, 1), book_numpy.col2im(dcol, x.shape, 3, 2, 2, 1)
    )
    nhwc = conv.col2im(dcol, (2, 7, 6, 3), 3, 2, 2, 1, layout="NHWC")
    chex.assert_trees_all_close(
        nhwc.transpose(0, 3, 1, 2), book_numpy.col2im(dcol, x.shape, 3, 2, 2, 1)
    )
    chex.assert_trees_all_equal(conv.im2col(x.transpose(0, 2, 3, 1), 3, 2, 2, 1, "NHWC"), col)


# --- layouts --------------------------------------------------------------------


def test_nhwc_is_nchw_transposed_values_and_gradients():
    rng = _rng()
    x, W, b = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((4, 3, 3, 2)), np.zeros(4)

    def net(layout):
        def f(x, W, b):
            h = conv.convolution(x, W, b, 2, 1, layout)
            return conv.pooling(funcbp.relu(h), 2, 2, 1, 0, layout)

        return f

    to_nhwc = (0, 2, 3, 1)
    dout = rng.standard_normal((2, 4, 3, 4))
    out, (dx, dW, db) = _vjp(net("NCHW"), (x, W, b), dout)
    nhwc = _vjp(net("NHWC"), (x.transpose(to_nhwc), W, b), dout.transpose(to_nhwc))
    want = (out.transpose(to_nhwc), (dx.transpose(to_nhwc), dW, db))
    chex.assert_trees_all_close(nhwc, want, rtol=1e-12)


def test_transpose_backward_is_the_inverse_permutation():
    x = jnp.arange(24.0).reshape(1, 2, 3, 4)
    dout = jnp.arange(24.0).reshape(1, 3, 4, 2) * 10
    out, (dx,) = _vjp(lambda x: conv.transpose(x, (0, 2, 3, 1)), (x,), dout)
    chex.assert_trees_all_equal(out, x.transpose(0, 2, 3, 1))
    chex.assert_trees_all_equal(dx, dout.transpose(0, 3, 1, 2))


# --- named edges ----------------------------------------------------------------


def test_pooling_tie_goes_to_the_first_maximum_in_row_major_order():
    x = jnp.array([[[[0.0, 2.0], [2.0, 2.0]]]])
    (dx,) = _vjp(conv.pooling, (x,), np.array([[[[5.0]]]]))[1]
    chex.assert_trees_all_equal(dx, jnp.array([[[[0.0, 5.0], [0.0, 0.0]]]]))


def test_all_zero_window_after_relu_sends_dout_to_its_top_left_then_relu_drops_it():
    x = -jnp.ones((1, 1, 2, 2))
    (d_pool_in,) = _vjp(conv.pooling, (funcbp.relu(x),), np.array([[[[5.0]]]]))[1]
    chex.assert_trees_all_equal(d_pool_in, jnp.array([[[[5.0, 0.0], [0.0, 0.0]]]]))
    g = jax.jit(jax.grad(lambda x: jnp.sum(conv.pooling(funcbp.relu(x)))))(x)
    chex.assert_trees_all_equal(g, jnp.zeros_like(x))


def test_overlapping_windows_add_their_gradients():
    # The centre is the max of all four 2x2 windows (stride 1), so it gets all four douts.
    x = jnp.zeros((1, 1, 3, 3)).at[0, 0, 1, 1].set(1.0)
    dout = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    (dx,) = _vjp(lambda x: conv.pooling(x, 2, 2, 1), (x,), dout)[1]
    assert dx[0, 0, 1, 1] == 10.0 and jnp.sum(dx) == 10.0


def test_col2im_adds_where_windows_overlap():
    ones = jnp.ones((4, 9))  # 3x3 filter over a 4x4 image, stride 1: 4 windows
    img = conv.col2im(ones, (1, 1, 4, 4), 3, 3)
    chex.assert_trees_all_equal(img[0, 0], jnp.array(np.outer([1, 2, 2, 1], [1, 2, 2, 1]), float))


def test_convolution_with_a_1x1_filter_is_a_per_pixel_matmul():
    rng = _rng()
    x, W, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((5, 3, 1, 1)), np.ones(5)
    want = np.einsum("nchw,fc->nfhw", x, W[:, :, 0, 0]) + 1
    chex.assert_trees_all_close(conv.convolution(x, W, b), want, rtol=1e-13)


# --- transformations ------------------------------------------------------------


def _small_convnet(layers):
    """A loss from funcbp's layers or, given funcbp.reference, from their twins."""

    def loss(W, b, x, t):
        h = layers.convolution(x, W, b, 1, 0, "NHWC")
        h = layers.pooling(layers.relu(h), 2, 2, 2, 0, "NHWC")
        h = layers.transpose(h, (0, 3, 1, 2))
        return layers.softmax_with_loss(h.reshape(h.shape[0], -1), t)

    return loss


def test_jit_vmap_of_grad_and_grad_of_grad():
    rng = _rng()
    W, b = rng.standard_normal((2, 1, 2, 2)), rng.standard_normal(2)
    x, t = rng.standard_normal((5, 1, 3, 3, 1)), rng.integers(0, 2, (5, 1))
    per_example = jax.jit(jax.vmap(jax.grad(_small_convnet(funcbp)), (None, None, 0, 0)))
    want = jax.jit(jax.vmap(jax.grad(_small_convnet(reference)), (None, None, 0, 0)))
    assert per_example(W, b, x, t).shape == (5, 2, 1, 2, 2)
    chex.assert_trees_all_close(per_example(W, b, x, t), want(W, b, x, t), rtol=1e-10)

    def hessian(layers):
        return jax.jit(jax.hessian(_small_convnet(layers), argnums=1))(W, b, x[0], t[0])

    chex.assert_trees_all_close(hessian(funcbp), hessian(reference), rtol=1e-10, atol=1e-13)


def test_float32_gradients_stay_float32():
    rng = _rng()
    W = jnp.asarray(rng.standard_normal((2, 1, 2, 2)), jnp.float32)
    b = jnp.zeros(2, jnp.float32)
    x = jnp.asarray(rng.standard_normal((3, 3, 3, 1)), jnp.float32)
    t = jnp.asarray([0, 1, 1])
    grads = jax.jit(jax.grad(_small_convnet(funcbp), argnums=(0, 1, 2)))(W, b, x, t)
    assert [g.dtype for g in grads] == [jnp.float32] * 3


# --- the rules called directly, as an explicit backprop sweep calls them ---------


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (conv.convolution, (np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.ones(3), 2, 1)),
        (conv.pooling, (np.arange(32.0).reshape(1, 2, 4, 4), 2, 2, 2, 0, "NHWC")),
        (conv.transpose, (np.ones((2, 3, 4)), (2, 0, 1))),
    ],
    ids=["convolution", "pooling", "transpose"],
)
def test_fwd_and_bwd_called_directly_agree_with_vjp(fn, args):
    # The static args found as a training engine finds them: the primal's
    # signature with its defaults, and nondiff_argnums.
    bound = inspect.signature(fn.fun).bind(*args)
    bound.apply_defaults()
    full = bound.args
    static = [full[i] for i in fn.nondiff_argnums]
    dynamic = [a for i, a in enumerate(full) if i not in fn.nondiff_argnums]
    dout = _rng().standard_normal(jax.eval_shape(lambda *d: fn(*d, *static), *dynamic).shape)

    @jax.jit
    def direct(dout):
        out, res = fn.fwd(*full)
        return out, fn.bwd(*static, res, dout)

    out, grads = direct(dout)
    assert len(grads) == len(dynamic)
    chex.assert_trees_all_close((out, grads), _vjp(lambda *d: fn(*d, *static), dynamic, dout))


# --- bad input --------------------------------------------------------------------

X = jnp.ones((2, 3, 6, 6))
W = jnp.ones((4, 3, 3, 3))
B = jnp.ones(4)

BAD_INPUTS = [
    (
        "filter larger than padded x",
        lambda: conv.convolution(X, jnp.ones((4, 3, 9, 3)), B),
        ValueError,
        r"the filter height must fit in x's padded height 6 \+ 2\*0 = 6, got 9",
    ),
    (
        "stride does not divide",
        lambda: conv.convolution(X, W, B, stride=2),
        ValueError,
        r"stride must divide x's height \+ 2\*pad - the filter height = 6 \+ 2\*0 - 3 = 3",
    ),
    (
        "channels",
        lambda: conv.convolution(X, jnp.ones((4, 2, 3, 3)), B),
        ValueError,
        r"W must have 3 input channels.*got W of shape \(4, 2, 3, 3\)",
    ),
    (
        "channels NHWC",
        lambda: conv.convolution(X, W, B, layout="NHWC"),
        ValueError,
        r"W must have 6 input channels",
    ),
    (
        "b shape",
        lambda: conv.convolution(X, W, jnp.ones(3)),
        ValueError,
        r"b must have shape \(4,\)",
    ),
    (
        "3-D x",
        lambda: conv.convolution(X[0], W, B),
        ValueError,
        r"x must have shape \(N, C, H, W\)",
    ),
    (
        "3-D W",
        lambda: conv.convolution(X, W[0], B),
        ValueError,
        r"W must have shape \(FN, C, FH, FW\)",
    ),
    (
        "negative pad",
        lambda: conv.convolution(X, W, B, pad=-1),
        ValueError,
        "pad must be at least 0",
    ),
    (
        "stride 0",
        lambda: conv.convolution(X, W, B, stride=0),
        ValueError,
        "stride must be at least 1",
    ),
    (
        "float stride",
        lambda: conv.convolution(X, W, B, stride=1.0),
        TypeError,
        "stride must be a Python int",
    ),
    (
        "bool pad",
        lambda: conv.convolution(X, W, B, pad=True),
        TypeError,
        "pad must be a Python int",
    ),
    (
        "array stride",
        lambda: conv.pooling(X, stride=jnp.array(2)),
        TypeError,
        "stride must be a Python int",
    ),
    (
        "layout",
        lambda: conv.convolution(X, W, B, layout="CHWN"),
        ValueError,
        "layout must be 'NCHW' or 'NHWC'",
    ),
    (
        "int x",
        lambda: conv.convolution(X.astype(int), W, B),
        TypeError,
        "x must be a floating-point array",
    ),
    (
        "mixed dtypes",
        lambda: conv.convolution(X, W.astype(jnp.float32), B),
        TypeError,
        "must share one dtype",
    ),
    (
        "pool larger than padded x",
        lambda: conv.pooling(X, 7, 2),
        ValueError,
        r"pool_h must fit in x's padded height 6 \+ 2\*0 = 6, got 7",
    ),
    (
        "pool stride does not divide",
        lambda: conv.pooling(X, 3, 3, 2),
        ValueError,
        "stride must divide",
    ),
    ("pool_w 0", lambda: conv.pooling(X, 2, 0), ValueError, "pool_w must be at least 1"),
    (
        "pool int x",
        lambda: conv.pooling(jnp.ones((1, 1, 2, 2), int)),
        TypeError,
        "x must be a floating",
    ),
    ("pool layout", lambda: conv.pooling(X, layout="nhwc"), ValueError, "layout must be"),
    (
        "transpose axes",
        lambda: conv.transpose(X, (0, 1, 2)),
        ValueError,
        r"axes must be a permutation of 0..3 for x of shape \(2, 3, 6, 6\), got \(0, 1, 2\)",
    ),
    ("transpose repeated", lambda: conv.transpose(X, (0, 1, 1, 2)), ValueError, "permutation"),
    ("transpose float axes", lambda: conv.transpose(X, (0, 2.0, 3, 1)), TypeError, "Python ints"),
    (
        "col2im shape",
        lambda: conv.col2im(jnp.ones((5, 27)), (2, 3, 6, 6), 3, 3),
        ValueError,
        r"col must have shape \(32, 27\)",
    ),
]


test_bad_input_raises_naming_the_argument = bad_input_test(BAD_INPUTS)


def test_bad_input_raises_under_jit_and_grad_too():
    with pytest.raises(ValueError, match="W must have 3 input channels"):
        jax.jit(jax.grad(lambda W: jnp.sum(conv.convolution(X, W, B))))(jnp.ones((4, 2, 3, 3)))
