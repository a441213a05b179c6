"""assert_rule: an assertion for tests, with the per-argument report in its message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import reference
from funcbp.testing import assert_rule


def _x(*shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(0).standard_normal(shape), dtype)


@jax.custom_vjp
def my_tanh(x):
    """A tanh a user wrote, with the right rule."""
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, dout):
    return (dout * (1 - y**2),)


my_tanh.defvjp(_tanh_fwd, _tanh_bwd)


@jax.custom_vjp
def my_tanh_forgets_the_square(x):
    return jnp.tanh(x)


my_tanh_forgets_the_square.defvjp(_tanh_fwd, lambda y, dout: (dout * (1 - y),))


def test_a_right_rule_passes_and_the_report_comes_back():
    report = assert_rule(my_tanh, jnp.tanh, _x(3, 4, dtype=jnp.float32))
    assert report.ok and report.name == "my_tanh" and report.dtype == "float32"


def test_a_wrong_rule_raises_an_assertion_error_naming_what_failed():
    with pytest.raises(AssertionError) as caught:
        assert_rule(my_tanh_forgets_the_square, jnp.tanh, _x(3, 4), second_order=False)
    message = str(caught.value)
    first = message.splitlines()[0]
    assert first == "assert_rule: my_tanh_forgets_the_square failed vs_autodiff, vs_numerical"
    assert "my_tanh_forgets_the_square x: vs_autodiff FAILED:" in message
    assert "times the tolerance (rtol" in message  # the numbers and the tolerance
    assert "switched off: second_order" in message


def test_options_and_keyword_arguments_pass_through():
    x = _x(2, 3, 4, 5)
    report = assert_rule(
        funcbp.transpose,
        reference.transpose,
        x,
        kwargs={"axes": (0, 2, 3, 1)},
        mode="directional",
        directions=2,
    )
    assert report.settings["mode"] == "directional"
    # A static positional argument (a tuple) needs no declaring, but may be declared.
    assert assert_rule(funcbp.transpose, reference.transpose, x, (0, 3, 1, 2), nondiff_argnums=(1,))


def test_a_kink_is_not_a_failure():
    report = assert_rule(funcbp.relu, reference.relu, jnp.array([-1.0, 0.0, 2.0]))
    assert report["vs_numerical"].status == "kink"
