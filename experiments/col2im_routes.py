"""col2im three ways, timed on the shapes of the book's conv nets (float32, jitted, CPU).

col2im sums each window's column back into the image, adding where windows
overlap. The routes, all from the book's (N*OH*OW, C*FH*FW) col to an NHWC
image:

- ``scatter``: ``img.at[:, i::stride, j::stride, :].add(...)`` per window
  position, the book's loop of ``+=`` written with JAX scatters;
- ``slices``: ``funcbp.conv.col2im``, the library's route: each window
  position's piece spread out by ``lax.pad`` (interior padding for the stride,
  negative edges to crop the padding), the pieces summed;
- ``transposed-conv``: the linear transpose of
  ``lax.conv_general_dilated_patches``, which JAX emits as a convolution with
  ``lhs_dilation`` (a transposed convolution).

Rounds are interleaved (each round runs every route once, in a rotated order)
and each figure is the median over rounds. ``slices`` pays for a permutation
of col's columns from the book's order, which the convolution's own rule does
not need, so the comparison is, if anything, unfair to it.

    python experiments/col2im_routes.py --rounds 9
"""

import argparse
import json
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcbp.conv import col2im

# name -> (x's NHWC shape, filter_h, filter_w, stride, pad)
SHAPES = {
    "SimpleConvNet conv 5x5": ((100, 28, 28, 1), 5, 5, 1, 0),
    "DeepConvNet conv2 3x3 pad 1": ((100, 28, 28, 16), 3, 3, 1, 1),
    "DeepConvNet conv4 3x3 pad 2": ((100, 14, 14, 32), 3, 3, 1, 2),
    "pool 2x2 stride 2": ((100, 24, 24, 30), 2, 2, 2, 0),
    "pool 3x3 stride 2 (overlap)": ((100, 27, 27, 8), 3, 3, 2, 0),
}


def _out(size, window, stride, pad):
    return (size + 2 * pad - window) // stride + 1


def scatter(col, shape, fh, fw, stride, pad):
    n, h, w, c = shape
    oh, ow = _out(h, fh, stride, pad), _out(w, fw, stride, pad)
    col = col.reshape(n, oh, ow, c, fh, fw)
    img = jnp.zeros((n, h + 2 * pad, w + 2 * pad, c), col.dtype)
    for i in range(fh):
        for j in range(fw):
            window = (
                slice(None),
                slice(i, i + stride * oh, stride),
                slice(j, j + stride * ow, stride),
            )
            img = img.at[window].add(col[..., i, j])
    return img[:, pad : h + pad, pad : w + pad, :]


def slices(col, shape, fh, fw, stride, pad):
    return col2im(col, shape, fh, fw, stride, pad, layout="NHWC")


def transposed_conv(col, shape, fh, fw, stride, pad):
    def patches(x):
        return lax.conv_general_dilated_patches(
            x,
            (fh, fw),
            (stride, stride),
            [(pad, pad)] * 2,
            dimension_numbers=("NHWC", "OIHW", "NHWC"),
        )

    n, h, w, _ = shape
    oh, ow = _out(h, fh, stride, pad), _out(w, fw, stride, pad)
    (img,) = jax.linear_transpose(patches, jax.ShapeDtypeStruct(shape, col.dtype))(
        col.reshape(n, oh, ow, -1)
    )
    return img


ROUTES = {"scatter": scatter, "slices": slices, "transposed-conv": transposed_conv}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", metavar="PATH", help="also write the medians as JSON")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    results = {}
    for label, (shape, fh, fw, stride, pad) in SHAPES.items():
        n, h, w, c = shape
        rows = n * _out(h, fh, stride, pad) * _out(w, fw, stride, pad)
        col = jnp.asarray(rng.standard_normal((rows, c * fh * fw)), jnp.float32)
        fns = {
            name: jax.jit(partial(route, shape=shape, fh=fh, fw=fw, stride=stride, pad=pad))
            for name, route in ROUTES.items()
        }
        outs = {name: jax.block_until_ready(fn(col)) for name, fn in fns.items()}
        for name, out in outs.items():  # the routes must agree before they are timed
            np.testing.assert_allclose(out, outs["slices"], rtol=1e-5, atol=1e-5, err_msg=name)
        times = {name: [] for name in fns}
        names = list(fns)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                jax.block_until_ready(fns[name](col))
                times[name].append(1e3 * (time.perf_counter() - start))
        results[label] = {
            "col": list(col.shape),
            "x": list(shape),
            **{name: statistics.median(t) for name, t in times.items()},
        }
        print(
            f"{label:<30} col {tuple(col.shape)!s:<14} -> x {shape!s:<19} "
            + "  ".join(f"{name} {results[label][name]:7.2f} ms" for name in names),
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
