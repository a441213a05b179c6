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
    # The floor: the book's OH = (H + 2*pad - FH) // stride + 1 leaves the last rows out.
    "3x3 stride 2 pad 1 on 8x8, floor": ((2, 2, 8, 8), (3, 2, 3, 3), 2, 1),
    "3x3 stride 2 on 8x9, last row left out": ((1, 2, 8, 9), (3, 2, 3, 3), 2, 0),
    "2x2 stride 3 on 7x9, floor with gaps": ((1, 2, 7, 9), (2, 2, 2, 2), 3, 0),
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
    "3x3 stride 2 on 8x8, floor": (_rng(6).standard_normal((2, 2, 8, 8)), 3, 3, 2),
    "2x2 stride 2 on 7x9, floor without overlap": (_rng(7).standard_normal((2, 2, 7, 9)), 2, 2, 2),
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


HELPER_CASES = {
    # name: (x shape, filter_h, filter_w, stride, pad)
    "3x2 stride 2 pad 1": ((2, 3, 7, 6), 3, 2, 2, 1),
    "3x3 stride 2 pad 1 on 8x8, floor": ((2, 2, 8, 8), 3, 3, 2, 1),
    "2x2 stride 3 on 7x9, floor with gaps": ((1, 2, 7, 9), 2, 2, 3, 0),
}


@pytest.mark.parametrize("case", HELPER_CASES)
def test_im2col_and_col2im_match_the_books_helpers(case):
    shape, fh, fw, stride, pad = HELPER_CASES[case]
    rng = _rng()
    x = rng.standard_normal(shape)
    col = book_numpy.im2col(x, fh, fw, stride, pad)
    dcol = rng.standard_normal(col.shape)
    want = book_numpy.col2im(dcol, x.shape, fh, fw, stride, pad)
    nhwc_shape = tuple(shape[i] for i in (0, 2, 3, 1))

    @jax.jit  # one program, not an op-by-op dispatch of every slice
    def helpers(x, dcol):
        return (
            conv.im2col(x, fh, fw, stride, pad),
            conv.im2col(x.transpose(0, 2, 3, 1), fh, fw, stride, pad, "NHWC"),
            conv.col2im(dcol, shape, fh, fw, stride, pad),
            conv.col2im(dcol, nhwc_shape, fh, fw, stride, pad, "NHWC").transpose(0, 3, 1, 2),
        )

    got_col, got_nhwc_col, got, got_nhwc = helpers(x, dcol)
    chex.assert_trees_all_equal((got_col, got_nhwc_col), (col, col))
    chex.assert_trees_all_close((got, got_nhwc), (want, want))


# --- the floor, against loops over every window ---------------------------------


def _loop_windows(x, fh, fw, stride, pad):
    """(i, j, window) for every output position: x zero-padded, NCHW, plain NumPy."""
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (xp.shape[2] - fh) // stride + 1, (xp.shape[3] - fw) // stride + 1
    for i in range(oh):
        for j in range(ow):
            rows, cols = slice(i * stride, i * stride + fh), slice(j * stride, j * stride + fw)
            yield i, j, (..., rows, cols), xp


def _loop_convolution(x, W, b, stride, pad, dout):
    """out and (dx, dW, db) of the convolution, one window at a time."""
    fh, fw = W.shape[2:]
    dout = np.asarray(dout)
    out, dW = np.zeros(dout.shape), np.zeros(W.shape)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    for i, j, window, xp in _loop_windows(x, fh, fw, stride, pad):
        out[:, :, i, j] = np.einsum("nchw,fchw->nf", xp[window], W) + b
        dW += np.einsum("nf,nchw->fchw", dout[:, :, i, j], xp[window])
        dxp[window] += np.einsum("nf,fchw->nchw", dout[:, :, i, j], W)
    h, w = x.shape[2:]
    return out, (dxp[:, :, pad : pad + h, pad : pad + w], dW, dout.sum(axis=(0, 2, 3)))


def _loop_pooling(x, ph, pw, stride, pad, dout):
    """out and dx of max pooling, one window at a time; ties go to the first maximum."""
    dout = np.asarray(dout)
    out = np.zeros(dout.shape)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    for i, j, window, xp in _loop_windows(x, ph, pw, stride, pad):
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                values = xp[(n, c, *window[1:])]
                k = int(np.argmax(values))  # row-major, first maximum
                out[n, c, i, j] = values.flat[k]
                dxp[n, c, i * stride + k // pw, j * stride + k % pw] += dout[n, c, i, j]
    h, w = x.shape[2:]
    return out, dxp[:, :, pad : pad + h, pad : pad + w]


FLOOR_CASES = {
    # name: (x shape, window, stride, pad); none has a stride that divides both sides.
    "3x3 stride 2 pad 1 on 8x8": ((2, 2, 8, 8), 3, 2, 1),
    "3x3 stride 2 pad 1 on 7x9": ((2, 2, 7, 9), 3, 2, 1),
    "3x3 stride 2 on 8x8, last row and column reached by no window": ((2, 2, 8, 8), 3, 2, 0),
    "2x2 stride 2 on 7x9, no overlap": ((2, 2, 7, 9), 2, 2, 0),
    "2x2 stride 3 pad 1 on 7x9, gaps": ((1, 2, 7, 9), 2, 3, 1),
    "3x3 stride 4 pad 2 on 9x7": ((1, 3, 9, 7), 3, 4, 2),
}
_NHWC = (0, 2, 3, 1)


def _out_hw(shape, window, stride, pad):
    return tuple((n + 2 * pad - window) // stride + 1 for n in shape[2:])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", FLOOR_CASES)
def test_convolution_floors_like_a_loop_over_windows(case, layout):
    shape, k, stride, pad = FLOOR_CASES[case]
    rng = _rng()
    x, W, b = rng.standard_normal(shape), rng.standard_normal((3, shape[1], k, k)), np.ones(3)
    dout = rng.standard_normal((shape[0], 3, *_out_hw(shape, k, stride, pad)))
    want_out, (want_dx, want_dW, want_db) = _loop_convolution(x, W, b, stride, pad, dout)
    if layout == "NHWC":
        x, dout = x.transpose(_NHWC), dout.transpose(_NHWC)
        want_out, want_dx = want_out.transpose(_NHWC), want_dx.transpose(_NHWC)
    got = _vjp(lambda *a: conv.convolution(*a, stride, pad, layout), (x, W, b), dout)
    chex.assert_trees_all_close(
        got, (want_out, (want_dx, want_dW, want_db)), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", FLOOR_CASES)
def test_pooling_floors_like_a_loop_over_windows(case, layout):
    shape, k, stride, pad = FLOOR_CASES[case]
    rng = _rng()
    x = rng.standard_normal(shape)
    dout = rng.standard_normal((*shape[:2], *_out_hw(shape, k, stride, pad)))
    want_out, want_dx = _loop_pooling(x, k, k, stride, pad, dout)
    if layout == "NHWC":
        x, dout = x.transpose(_NHWC), dout.transpose(_NHWC)
        want_out, want_dx = want_out.transpose(_NHWC), want_dx.transpose(_NHWC)
    got = _vjp(lambda x: conv.pooling(x, k, k, stride, pad, layout), (x,), dout)
    chex.assert_trees_all_close(got, (want_out, (want_dx,)), rtol=1e-14)


def test_rows_and_columns_no_window_reaches_get_zero_gradient():
    # 3x3 windows two apart on 8x8 reach rows 0..6: row 7 and column 7 are left out.
    x = _rng().standard_normal((1, 2, 8, 8)) + 10.0  # the max of a window is never the padding
    W = np.ones((1, 2, 3, 3))

    @jax.jit
    def grads(x):
        def conv_loss(x):
            return jnp.sum(conv.convolution(x, W, np.zeros(1), 2))

        return jax.grad(conv_loss)(x), jax.grad(lambda x: jnp.sum(conv.pooling(x, 3, 3, 2)))(x)

    for dx in grads(x):
        assert np.all(dx[..., 7, :] == 0) and np.all(dx[..., :, 7] == 0)
        assert np.any(dx[..., 6, :] != 0) and np.any(dx[..., :, 6] != 0)


def test_resnet_stem_pool_takes_112_to_56():
    x = _rng().standard_normal((2, 4, 112, 112))
    out = conv.pooling(x, 3, 3, 2, 1)
    assert out.shape == (2, 4, 56, 56)
    chex.assert_trees_all_equal(out, reference.pooling(x, 3, 3, 2, 1))
    dout = _rng(1).standard_normal(out.shape)
    got = _vjp(lambda x: conv.pooling(x, 3, 3, 2, 1), (x,), dout)
    want = _vjp(lambda x: reference.pooling(x, 3, 3, 2, 1), (x,), dout)
    chex.assert_trees_all_close(got, want, rtol=1e-13, atol=1e-15)


# --- without a bias ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_convolution_without_bias_has_no_db(layout):
    rng = _rng()
    x, W = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    if layout == "NHWC":
        x = x.transpose(_NHWC)
    dout = rng.standard_normal(
        jax.eval_shape(lambda: conv.convolution(x, W, None, 2, 1, layout)).shape
    )
    out, (dx, dW, db) = _vjp(
        lambda x, W, b: conv.convolution(x, W, b, 2, 1, layout), (x, W, None), dout
    )
    assert db is None
    with_zero_bias = _vjp(
        lambda x, W: conv.convolution(x, W, np.zeros(4), 2, 1, layout), (x, W), dout
    )
    chex.assert_trees_all_equal((out, (dx, dW)), with_zero_bias)
    twin = _vjp(lambda x, W: reference.convolution(x, W, None, 2, 1, layout), (x, W), dout)
    chex.assert_trees_all_close((out, (dx, dW)), twin, rtol=1e-12, atol=1e-13)
    grads = jax.jit(
        jax.grad(lambda x, W, b: jnp.sum(conv.convolution(x, W, b, 1, 0, layout)), (0, 1, 2))
    )
    assert grads(x, W, None)[2] is None


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
        "x with 0 channels",
        lambda: conv.convolution(jnp.ones((2, 0, 6, 6)), jnp.ones((4, 0, 3, 3)), B),
        ValueError,
        r"x must have at least 1 channel, got shape \(2, 0, 6, 6\)",
    ),
    (
        "0 filters",
        lambda: conv.convolution(X, jnp.ones((0, 3, 3, 3)), jnp.ones(0)),
        ValueError,
        r"W must have at least 1 filter, 1 channel and a 1x1 window, got W of shape \(0, 3, 3, 3\)",
    ),
    (
        "W with 0 channels",
        lambda: conv.convolution(X, jnp.ones((4, 0, 3, 3)), B),
        ValueError,
        r"W must have at least 1 filter.*got W of shape \(4, 0, 3, 3\)",
    ),
    (
        "a 0x3 filter",
        lambda: conv.convolution(X, jnp.ones((4, 3, 0, 3)), B),
        ValueError,
        r"W must have at least 1 filter, 1 channel and a 1x1 window",
    ),
    (
        "pad too large for memory",
        lambda: conv.convolution(X, W, B, pad=10**6),
        ValueError,
        r"pad 1000000 pads x's height and width to 2000006 x 2000006 \(6 \+ 2\*1000000 .*"
        r"more than the [\d,]+ GiB of memory",
    ),
    (
        "pool pad too large for memory",
        lambda: conv.pooling(X, pad=10**6),
        ValueError,
        r"pad 1000000 pads x's height and width to 2000006 x 2000006",
    ),
    (
        "col2im pad too large for memory",
        lambda: conv.col2im(jnp.ones((5, 27)), (2, 3, 6, 6), 3, 3, pad=10**6),
        ValueError,
        r"pad 1000000 pads x's height and width to 2000006 x 2000006",
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
        "int b",
        lambda: conv.convolution(X, W, jnp.ones(4, int)),
        TypeError,
        "b must be a floating-point array",
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


def test_a_pad_is_refused_by_the_memory_its_windows_take(monkeypatch):
    # im2col of X with a 3x3 filter: 2*3*(4*4)*9 float64s = 6912 bytes at pad 0,
    # 2*3*(6*6)*9*8 = 15552 at pad 1.
    monkeypatch.setattr(conv, "_memory_bytes", lambda: 10_000)
    assert conv.convolution(X, W, B).shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"pad 1 pads x's height and width to 8 x 8 .*more than"):
        conv.convolution(X, W, B, pad=1)


def test_bad_input_raises_under_jit_and_grad_too():
    with pytest.raises(ValueError, match="W must have 3 input channels"):
        jax.jit(jax.grad(lambda W: jnp.sum(conv.convolution(X, W, B))))(jnp.ones((4, 2, 3, 3)))
