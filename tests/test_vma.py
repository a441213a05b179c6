"""Every rule is registered through funcbp._vma.defvjp, and keeps the book's forward/backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import conv, layers, norm


def _rules():
    for module in (layers, conv, norm):
        for name in module.__all__:
            fn = getattr(module, name)
            if isinstance(fn, jax.custom_vjp):
                yield f"{module.__name__}.{name}", fn


@pytest.mark.parametrize(("name", "fn"), list(_rules()), ids=[n for n, _ in _rules()])
def test_every_rule_goes_through_the_typed_registration(name, fn):
    # forward/backward exist only where _vma.defvjp registered the rule.
    assert callable(fn.forward) and callable(fn.backward), name


def test_forward_and_backward_are_the_books_two_steps():
    x = jnp.array([[1.0, -0.5], [-2.0, 3.0]])
    W, b = jnp.eye(2), jnp.zeros(2)
    out, cache = layers.affine.forward(x, W, b)
    dout = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    dx, dW, db = layers.affine.backward(cache, dout)
    _, vjp = jax.vjp(layers.affine, x, W, b)
    for manual, auto in zip((dx, dW, db), vjp(dout), strict=True):
        np.testing.assert_array_equal(manual, auto)
    np.testing.assert_array_equal(out, x)


def test_backward_takes_the_static_arguments_first():
    x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    out, arg_max = conv.pooling.forward(x, 2, 2, 2, 0, "NCHW")
    (dx,) = conv.pooling.backward(2, 2, 2, 0, "NCHW", arg_max, jnp.ones_like(out))
    np.testing.assert_array_equal(dx, jax.grad(lambda x: conv.pooling(x).sum())(x))
