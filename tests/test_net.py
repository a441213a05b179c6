"""Networks as layer sequences: the four gradient methods agree."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp.net import GRADIENT_METHODS, Network, network, two_layer


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (3, 20)))
    t = jnp.asarray(rng.integers(0, 4, 3))
    return x, t


def test_two_layer_is_the_books_sequence():
    assert [layer.name for layer in two_layer.layers] == ["Affine1", "Relu1", "Affine2"]
    assert two_layer.last_layer.name == "SoftmaxWithLoss"
    params = two_layer.init(jax.random.key(0))
    chex.assert_shape([params["W1"], params["b1"], params["W2"], params["b2"]],
                      [(784, 50), (50,), (50, 10), (10,)])  # fmt: skip
    assert float(jnp.std(params["W1"])) == pytest.approx(0.01, rel=0.05)
    assert not jnp.any(params["b1"]) and params["W1"].dtype == jnp.float32


@pytest.mark.parametrize(
    "net",
    [two_layer, network([6, 5], "sigmoid"), network([7, 6, 5], "relu")],
    ids=["two_layer", "sigmoid-6-5", "relu-7-6-5"],
)
def test_the_four_gradient_methods_agree(net, batch):
    x, t = batch
    params = net.init(jax.random.key(1), 20, None if net is not two_layer else 8, 4,
                      weight_init_std="he", dtype=jnp.float64)  # fmt: skip
    gradient = jax.jit(net.gradient, static_argnames="method")
    grads = {m: gradient(params, x, t, method=m) for m in GRADIENT_METHODS}
    for m in ("backprop", "autodiff"):
        chex.assert_trees_all_close(grads[m], grads["manual"], rtol=1e-10, atol=1e-14)
    chex.assert_trees_all_close(grads["numerical"], grads["manual"], rtol=1e-5, atol=1e-8)


def test_backprop_uses_no_autodiff(batch, monkeypatch):
    x, t = batch
    params = two_layer.init(jax.random.key(0), 20, 8, 4, dtype=jnp.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("backprop must not call jax.grad or jax.vjp")

    monkeypatch.setattr(jax, "grad", refuse)
    monkeypatch.setattr(jax, "vjp", refuse)
    grads = two_layer.backprop(params, x, t)
    assert sorted(grads) == ["W1", "W2", "b1", "b2"]
    assert list(grads) == list(params)


def test_predict_accuracy_and_one_hot_labels(batch):
    x, t = batch
    params = two_layer.init(jax.random.key(0), 20, 8, 4, dtype=jnp.float64)
    scores = two_layer.predict(params, x)
    assert scores.shape == (3, 4)
    expected = jnp.mean(jnp.argmax(scores, 1) == t)
    assert two_layer.accuracy(params, x, t) == expected
    assert two_layer.accuracy(params, x, jax.nn.one_hot(t, 4)) == expected
    np.testing.assert_allclose(
        two_layer.loss(params, x, t), funcbp.softmax_with_loss(scores, t), rtol=1e-12
    )


def test_he_and_xavier_scales():
    wide = network([400], "relu").init(jax.random.key(0), 784, None, 10, weight_init_std="he")
    assert float(jnp.std(wide["W1"])) == pytest.approx((2 / 784) ** 0.5, rel=0.05)
    assert float(jnp.std(wide["W2"])) == pytest.approx((2 / 400) ** 0.5, rel=0.1)
    sig = network([400], "sigmoid").init(jax.random.key(0), 784, None, 10, weight_init_std="xavier")
    assert float(jnp.std(sig["W1"])) == pytest.approx((1 / 784) ** 0.5, rel=0.05)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Network((0,)), "hidden_sizes must be positive integers"),
        (lambda: Network((), "relu"), "hidden_sizes must be positive integers"),
        (lambda: network(50, "tanh"), "activation must be one of relu, sigmoid, got 'tanh'"),
        (lambda: two_layer.init(jax.random.key(0), hidden_size=(5, 5)), "hidden_size must be 1"),
        (lambda: two_layer.init(jax.random.key(0), weight_init_std=-1), "weight_init_std must"),
        (lambda: two_layer.gradient({}, None, None, method="magic"), "method must be one of"),
    ],
)
def test_bad_network_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
