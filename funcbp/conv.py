"""Convolution and pooling (chapter 7) as pure functions with hand-written backward rules.

The layers take the book's NCHW input and its filter shape (FN, C, FH, FW),
so weights trained by the book's code load as they are. ``layout="NHWC"``
runs the same rule on channels-last activations; a network that keeps
NHWC between its layers and uses :func:`transpose` once, before the flatten
into Affine, avoids moving every activation through a transpose.

Both rules take the book's route, written with slices instead of loops:
:func:`im2col` lays every window out as a row, the convolution is one matmul
on it, and :func:`col2im` sums each window's gradient back into place, the
overlaps adding. Padding is with zeros, as the book's ``im2col`` pads.

The output size is the book's floor, ``OH = (H + 2*pad - FH) // stride + 1``,
as in PyTorch and ``lax.reduce_window``: where the stride does not divide
``H + 2*pad - FH``, the last rows (or columns) that no window reaches are left
out, and their gradient is 0. The rules keep x's height and width, which OH
no longer tells. A pad whose windows could not fit in memory is refused
before anything is allocated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial, reduce

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from funcbp import _vma
from funcbp.layers import _floating, _same_dtype, _static_int

__all__ = ["convolution", "pooling", "transpose"]

LAYOUTS = ("NCHW", "NHWC")


def _spatial_axes(layout: object) -> tuple[int, int]:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return (2, 3) if layout == "NCHW" else (1, 2)


def _out_size(dim: str, size: int, window: int, stride: int, pad: int, what: str) -> int:
    """OH = (H + 2*pad - FH) // stride + 1: the rows past the last window are left out."""
    padded = size + 2 * pad
    if window > padded:
        raise ValueError(
            f"{what} must fit in x's padded {dim} {size} + 2*{pad} = {padded}, got {window}"
        )
    return (padded - window) // stride + 1


def _out_hw(shape, axes, window, stride: int, pad: int, what, itemsize: int) -> tuple[int, int]:
    """(OH, OW) for x of ``shape``, refusing windows that do not fit in x or in memory.

    The largest arrays a rule builds are the padded x and the windows, im2col's
    ``N*OH*OW*FH*FW*C`` values; either is checked before it exists.
    """
    (h, w), (fh, fw) = (shape[a] for a in axes), window
    out = (
        _out_size("height", h, fh, stride, pad, what[0]),
        _out_size("width", w, fw, stride, pad, what[1]),
    )
    padded = (h + 2 * pad, w + 2 * pad)
    rest = math.prod(n for a, n in enumerate(shape) if a not in axes)  # N*C
    need = rest * max(padded[0] * padded[1], out[0] * out[1] * fh * fw) * itemsize
    have = _memory_bytes()
    if have is not None and need > have:
        raise ValueError(
            f"pad {pad} pads x's height and width to {padded[0]} x {padded[1]} "
            f"({h} + 2*{pad} by {w} + 2*{pad}); its windows would take {need / 2**30:,.0f} GiB, "
            f"more than the {have / 2**30:,.0f} GiB of memory of all devices together"
        )
    return out


_FILTER = ("the filter height", "the filter width")


@cache
def _memory_bytes() -> int | None:
    """The memory of all devices together, None if unknown.

    CPU devices share their host's memory; every process is taken to have as
    much as this one.
    """
    devices = jax.local_devices()
    if devices[0].platform == "cpu":
        try:
            local = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return None
    else:
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in devices]
        if not all(limits):
            return None
        local = sum(limits)
    return local * jax.process_count()


@jax.tree_util.register_static
@dataclass(frozen=True)
class _Kept:
    """What a rule keeps besides arrays: x's (H, W), which OH no longer tells, and the bias."""

    size: tuple[int, int]
    bias: bool = True


def _image(x: ArrayLike, layout: str) -> Array:
    x = _floating("x", x)
    if x.ndim != 4:
        raise ValueError(
            f"x must have shape {'(N, C, H, W)' if layout == 'NCHW' else '(N, H, W, C)'}, "
            f"got shape {x.shape}"
        )
    return x


def _pad_spatial(x: Array, pad: int, axes: tuple[int, int]) -> Array:
    if pad == 0:
        return x
    widths = [(pad, pad) if a in axes else (0, 0) for a in range(x.ndim)]
    return jnp.pad(x, widths)


def _windows(
    x_pad: Array, kh: int, kw: int, stride: int, out: tuple[int, int], axes: tuple[int, int]
) -> list[Array]:
    """x_pad's values under each window position (i, j), row-major: kh*kw strided slices.

    Slice ``i * kw + j`` holds ``x_pad[..., i + stride*oh, j + stride*ow]`` at
    ``(oh, ow)``: the book's ``col[:, :, i, j, :, :]``.
    """
    h, w = axes
    return [
        window
        for row in _shifts(x_pad, h, kh, stride, out[0])
        for window in _shifts(row, w, kw, stride, out[1])
    ]


def _shifts(x: Array, axis: int, k: int, stride: int, n: int) -> list[Array]:
    """The k window offsets along one axis: slice i holds ``x[..., i + stride*o, ...]``, o < n."""
    return [lax.slice_in_dim(x, i, i + stride * (n - 1) + 1, stride, axis) for i in range(k)]


def _add_windows(pieces: Sequence[Array], size, kw: int, stride: int, pad: int, axes) -> Array:
    """The transpose of :func:`_windows` followed by the crop of the padding.

    Each piece goes back to its strided offsets by ``lax.pad`` (interior
    padding spreads it out, negative edge padding crops the zero padding) and
    the pieces are summed, so overlapping windows add. XLA fuses this into one
    pass; on CPU a scatter-add and, far more, a transposed convolution are
    slower (experiments/col2im_routes.py measures the three). Windows that do
    not overlap take :func:`_interleave` instead.
    """
    if stride >= len(pieces) // kw and stride >= kw:
        return _interleave(pieces, size, kw, stride, pad, axes)
    h, w = axes
    out = (pieces[0].shape[h], pieces[0].shape[w])
    placed = []
    for k, piece in enumerate(pieces):
        config = [(0, 0, 0)] * piece.ndim
        for axis, offset, n, full in ((h, k // kw, out[0], size[0]), (w, k % kw, out[1], size[1])):
            low = offset - pad
            config[axis] = (low, full - low - stride * (n - 1) - 1, stride - 1)
        placed.append(lax.pad(piece, jnp.zeros((), piece.dtype), config))
    return reduce(jnp.add, placed)


def _interleave(pieces: Sequence[Array], size, kw: int, stride: int, pad: int, axes) -> Array:
    """:func:`_add_windows` when the windows do not overlap (stride >= the window).

    Every element of the image then lies in at most one window, so nothing is
    summed: the pieces are stacked, zero-filled up to the stride (the gaps
    between windows), and each window offset ``(i, j)`` is moved next to its
    output axis, so element ``(oh, i)`` lands at row ``oh * stride + i``; one
    reshape, then the crop of the padding. The book's 2x2 pool with stride 2
    goes this way. Summing ``lax.pad``'d pieces instead makes XLA test every
    piece at every element, and in a training step it recomputes the pool's
    ``arg_max`` for each of them.
    """
    h, w = axes
    kh, shape = len(pieces) // kw, pieces[0].shape
    tiles = jnp.stack(pieces).reshape(kh, kw, *shape)
    tiles = jnp.pad(tiles, [(0, stride - kh), (0, stride - kw)] + [(0, 0)] * len(shape))
    order = []
    for axis in range(len(shape)):
        order += [axis + 2, *([0] if axis == h else []), *([1] if axis == w else [])]
    tiled = list(shape)
    tiled[h], tiled[w] = shape[h] * stride, shape[w] * stride
    # One merge per reshape (OW with its offsets, then OH): a batch-sharded x on an
    # Explicit mesh has a sharding rule for a single merge, not for two at once.
    half = [*tiled[:h], shape[h], stride, *tiled[h + 1 :]]
    image = tiles.transpose(order).reshape(half).reshape(tiled)
    config = [(0, 0, 0)] * len(shape)
    for axis, full in ((h, size[0]), (w, size[1])):
        config[axis] = (-pad, full + pad - tiled[axis], 0)  # <= 0: crops
    return lax.pad(image, jnp.zeros((), image.dtype), config)


# --- im2col / col2im --------------------------------------------------------
#
# Inside the rules a window's C values stay contiguous: col's columns run in
# (FH, FW, C) order, each window position's slice copied whole, and W is
# transposed to (FN, FH, FW, C) to match (a few hundred numbers). The book's
# (C, FH, FW) order would interleave the slices element by element, a strided
# copy of every column on every step. The public helpers below keep the book's
# order.


def _to_nhwc(x: Array, layout: str) -> Array:
    return x if layout == "NHWC" else x.transpose(0, 2, 3, 1)


def _from_nhwc(x: Array, layout: str) -> Array:
    return x if layout == "NHWC" else x.transpose(0, 3, 1, 2)


def _im2col(x: Array, fh: int, fw: int, stride: int, pad: int) -> Array:
    """(N, H, W, C) -> (N, OH, OW, FH*FW*C)."""
    out = _out_hw(x.shape, (1, 2), (fh, fw), stride, pad, _FILTER, x.dtype.itemsize)
    x_pad = _pad_spatial(x, pad, (1, 2))
    if x.shape[3] > 1:
        return jnp.concatenate(_windows(x_pad, fh, fw, stride, out, (1, 2)), -1)
    # One channel: each window position adds one float per row of col, and XLA's CPU
    # backend neither fuses a concatenation of more than 8 pieces nor copies single
    # floats fast. In two steps, the FW column offsets and then the FH row offsets, each
    # concatenation has FW or FH pieces and fuses (25 pieces of the book's 5x5 filter
    # cost about 10% of a SimpleConvNet step). Wider channels copy fast as they are.
    rows = jnp.concatenate(_shifts(x_pad, 2, fw, stride, out[1]), -1)  # (N, H, OW, FW)
    return jnp.concatenate(_shifts(rows, 1, fh, stride, out[0]), -1)


def _col2im(col: Array, size, fh: int, fw: int, stride: int, pad: int) -> Array:
    """(N, OH, OW, FH*FW*C) -> (N, H, W, C): each window's columns summed back into place.

    ``size`` is (H, W); rows and columns that no window reaches get 0.
    """
    c = col.shape[3] // (fh * fw)
    pieces = [col[..., k * c : (k + 1) * c] for k in range(fh * fw)]
    return _add_windows(pieces, size, fw, stride, pad, (1, 2))


def _filters(W: Array) -> Array:
    """(FN, C, FH, FW) -> (FN, FH*FW*C), matching _im2col's columns."""
    return W.transpose(0, 2, 3, 1).reshape(W.shape[0], -1)


def _helper_args(layout, filter_h, filter_w, stride, pad) -> tuple[int, int, int, int]:
    _spatial_axes(layout)
    return (
        _static_int("filter_h", filter_h, 1),
        _static_int("filter_w", filter_w, 1),
        _static_int("stride", stride, 1),
        _static_int("pad", pad, 0),
    )


def im2col(
    x: ArrayLike, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, layout: str = "NCHW"
) -> Array:
    """The book's ``im2col``: every filter window of x as one row.

    Args:
        x: (N, C, H, W), or (N, H, W, C) for ``layout="NHWC"``.
        filter_h, filter_w, stride, pad: the window, its step and the zero padding.

    Returns:
        (N*OH*OW, C*FH*FW), rows in (N, OH, OW) order and columns in the book's
        (C, FH, FW) order, so ``im2col(x, ...) @ W.reshape(FN, -1).T`` is the
        convolution.
    """
    fh, fw, stride, pad = _helper_args(layout, filter_h, filter_w, stride, pad)
    col = _im2col(_to_nhwc(_image(x, layout), layout), fh, fw, stride, pad)
    col = col.reshape(-1, fh * fw, col.shape[-1] // (fh * fw))
    return col.transpose(0, 2, 1).reshape(col.shape[0], -1)


def col2im(
    col: ArrayLike,
    input_shape: Sequence[int],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
    layout: str = "NCHW",
) -> Array:
    """The book's ``col2im``, the transpose of :func:`im2col`: rows summed back into an image.

    Args:
        col: (N*OH*OW, C*FH*FW), as :func:`im2col` returns.
        input_shape: x's shape, (N, C, H, W), or (N, H, W, C) for ``layout="NHWC"``.

    Returns:
        An array of input_shape; where windows overlap, their values add.
    """
    fh, fw, stride, pad = _helper_args(layout, filter_h, filter_w, stride, pad)
    col = _floating("col", col)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must have 4 entries, got {tuple(input_shape)}")
    n, h, w, c = input_shape if layout == "NHWC" else [input_shape[i] for i in (0, 2, 3, 1)]
    oh, ow = _out_hw((n, h, w, c), (1, 2), (fh, fw), stride, pad, _FILTER, col.dtype.itemsize)
    if col.shape != (n * oh * ow, c * fh * fw):
        raise ValueError(
            f"col must have shape ({n * oh * ow}, {c * fh * fw}) for input_shape "
            f"{tuple(input_shape)}, got {col.shape}"
        )
    col = col.reshape(n, oh, ow, c, fh * fw).swapaxes(3, 4).reshape(n, oh, ow, -1)
    return _from_nhwc(_col2im(col, (h, w), fh, fw, stride, pad), layout)


# --- Convolution ------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def convolution(
    x: ArrayLike,
    W: ArrayLike,
    b: ArrayLike | None,
    stride: int = 1,
    pad: int = 0,
    layout: str = "NCHW",
) -> Array:
    """The book's Convolution: im2col, then one matmul with the filters.

    Args:
        x: (N, C, H, W), or (N, H, W, C) for ``layout="NHWC"``.
        W: (FN, C, FH, FW), the book's filters, whatever the layout.
        b: (FN,), or None for a convolution without bias.
        stride, pad: Python ints; the padding is with zeros.

    Returns:
        (N, FN, OH, OW), or (N, OH, OW, FN) for NHWC, with
        ``OH = (H + 2*pad - FH) // stride + 1`` (the floor: rows that no
        window reaches are left out).

    Backward, with ``col = im2col(x)`` and ``dout`` as (N*OH*OW, FN):
    ``dW = (col.T @ dout).T`` reshaped to W's shape, ``db = sum(dout, 0)``
    (none without a bias), ``dx = col2im(dout @ W.reshape(FN, -1))``, 0 on
    the rows and columns that no window reaches.
    """
    return _convolution_fwd(x, W, b, stride, pad, layout)[0]


def _convolution_fwd(x, W, b, stride=1, pad=0, layout="NCHW"):
    _spatial_axes(layout)
    stride, pad = _static_int("stride", stride, 1), _static_int("pad", pad, 0)
    x, W = _image(x, layout), _floating("W", W)
    if x.shape[1 if layout == "NCHW" else 3] == 0:
        raise ValueError(f"x must have at least 1 channel, got shape {x.shape}")
    if W.ndim != 4:
        raise ValueError(f"W must have shape (FN, C, FH, FW), got shape {W.shape}")
    if 0 in W.shape:
        raise ValueError(
            f"W must have at least 1 filter, 1 channel and a 1x1 window, got W of shape {W.shape}"
        )
    x = _to_nhwc(x, layout)
    fn, c, fh, fw = W.shape
    if c != x.shape[3]:
        raise ValueError(
            f"W must have {x.shape[3]} input channels (W.shape[1]) to match x's channels, "
            f"got W of shape {W.shape}"
        )
    bias = {} if b is None else {"b": _floating("b", b)}
    if bias and bias["b"].shape != (fn,):
        raise ValueError(
            f"b must have shape ({fn},) to match W's {fn} filters, got {bias['b'].shape}"
        )
    _same_dtype(x=x, W=W, **bias)
    col = _im2col(x, fh, fw, stride, pad)  # (N, OH, OW, FH*FW*C)
    out = col.reshape(-1, col.shape[-1]) @ _filters(W).T
    if bias:
        out = out + bias["b"][None, :]
    out = out.reshape(*col.shape[:3], fn)
    # The book keeps x, col and col_W = W.reshape(FN, -1).T; of x, the rule needs its size.
    return _from_nhwc(out, layout), (col, W, _Kept(x.shape[1:3], bias=bool(bias)))


def _convolution_bwd(stride, pad, layout, res, dout):
    col, W, kept = res
    fn, _, fh, fw = W.shape
    dout = _to_nhwc(dout, layout).reshape(-1, fn)
    db = jnp.sum(dout, axis=0) if kept.bias else None
    # With a batch-sharded x on an Explicit mesh, dout.T @ col contracts the sharded
    # axis; the result is laid out like W's filters (replicated, for data parallelism),
    # on col's mesh, which a W off the mesh lacks.
    like_W = NamedSharding(jax.typeof(col).sharding.mesh, P(jax.typeof(W).sharding.spec[0]))
    dW = jnp.matmul(dout.T, col.reshape(-1, col.shape[-1]), out_sharding=like_W)
    # col's columns run (FH, FW, C); dW goes back to the book's (FN, C, FH, FW).
    dW = dW.reshape(fn, fh, fw, -1).transpose(0, 3, 1, 2)
    dcol = (dout @ _filters(W)).reshape(col.shape)
    dx = _col2im(dcol, kept.size, fh, fw, stride, pad)
    return _from_nhwc(dx, layout), dW, db


_vma.defvjp(convolution, _convolution_fwd, _convolution_bwd)


# --- Pooling ----------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def pooling(
    x: ArrayLike,
    pool_h: int = 2,
    pool_w: int = 2,
    stride: int = 2,
    pad: int = 0,
    layout: str = "NCHW",
) -> Array:
    """The book's Pooling: the max of each pool_h x pool_w window, per channel.

    Args:
        x: (N, C, H, W), or (N, H, W, C) for ``layout="NHWC"``.
        pool_h, pool_w, stride, pad: Python ints. The padding is with zeros, as
            the book's im2col pads (a window over the padding of an all-negative
            border takes the max 0).

    Returns:
        (N, C, OH, OW), or (N, OH, OW, C), with
        ``OH = (H + 2*pad - pool_h) // stride + 1`` (the floor, as for
        convolution; ResNet's 3x3 stride-2 pad-1 pool takes 112 to 56). The
        book's Pooling leaves the pad out of OH, so its forward fails for any pad > 0.

    Backward: each window's dout goes to the position of its max, ``arg_max``.
    On ties it goes to the first maximum in row-major window order, as the
    book's ``np.argmax`` sends it (after a ReLU, an all-zero window gives its
    dout to its top-left element). Where windows overlap, the gradients add;
    rows and columns that no window reaches get 0.
    """
    return _pooling_fwd(x, pool_h, pool_w, stride, pad, layout)[0]


def _pooling_fwd(x, pool_h=2, pool_w=2, stride=2, pad=0, layout="NCHW"):
    axes = _spatial_axes(layout)
    pool_h, pool_w = _static_int("pool_h", pool_h, 1), _static_int("pool_w", pool_w, 1)
    stride, pad = _static_int("stride", stride, 1), _static_int("pad", pad, 0)
    x = _image(x, layout)
    pool = (pool_h, pool_w)
    out_size = _out_hw(x.shape, axes, pool, stride, pad, ("pool_h", "pool_w"), x.dtype.itemsize)
    windows = _windows(_pad_spatial(x, pad, axes), pool_h, pool_w, stride, out_size, axes)
    out = reduce(jnp.maximum, windows)
    # Walking the windows backwards, the last equal one written is the first maximum.
    arg_max = jnp.full(out.shape, len(windows) - 1, jnp.int32)
    for k in reversed(range(len(windows) - 1)):
        arg_max = jnp.where(windows[k] == out, k, arg_max)
    # The book keeps x and arg_max; of x, the rule needs its size.
    return out, (arg_max, _Kept(tuple(x.shape[a] for a in axes)))


def _pooling_bwd(pool_h, pool_w, stride, pad, layout, res, dout):
    arg_max, kept = res
    zero = jnp.zeros_like(dout)
    pieces = [jnp.where(arg_max == k, dout, zero) for k in range(pool_h * pool_w)]
    return (_add_windows(pieces, kept.size, pool_w, stride, pad, _spatial_axes(layout)),)


_vma.defvjp(pooling, _pooling_fwd, _pooling_bwd)


# --- Transpose --------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def transpose(x: ArrayLike, axes: Sequence[int]) -> Array:
    """``jnp.transpose(x, axes)``, e.g. NHWC -> NCHW before the book's flatten into Affine.

    Args:
        x: any floating array.
        axes: a permutation of ``range(x.ndim)``, a tuple of Python ints.

    Backward: ``dx = transpose(dout, argsort(axes))``, the inverse permutation.
    """
    return _transpose_fwd(x, axes)[0]


def _transpose_fwd(x, axes):
    x = _floating("x", x)
    if not isinstance(axes, tuple | list) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        raise TypeError(f"axes must be a tuple of Python ints, got {axes!r}")
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(
            f"axes must be a permutation of 0..{x.ndim - 1} for x of shape {x.shape}, got {axes!r}"
        )
    return jnp.transpose(x, tuple(axes)), None


def _transpose_bwd(axes, _, dout):
    inverse = sorted(range(len(axes)), key=lambda i: axes[i])
    return (jnp.transpose(dout, inverse),)


_vma.defvjp(transpose, _transpose_fwd, _transpose_bwd)
