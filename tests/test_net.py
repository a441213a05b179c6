"""Networks as layer sequences: the four gradient methods agree; backprop uses no autodiff."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp.net import GRADIENT_METHODS, Network
from funcbp.zoo import network, two_layer, two_layer_net


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (3, 20)))
    t = jnp.asarray(rng.integers(0, 4, 3))
    return x, t


SMALL_NETS = {
    "two_layer": two_layer_net(20, 8, 4, weight_init_std="he"),
    "sigmoid-6-5": network([6, 5], "sigmoid", input_size=20, output_size=4),
    "relu-7-6-5": network([7, 6, 5], input_size=20, output_size=4),
    "weight-decay": network([7, 6], input_size=20, output_size=4, weight_decay=0.3),
}


@pytest.mark.parametrize("net", SMALL_NETS.values(), ids=SMALL_NETS.keys())
def test_the_four_gradient_methods_agree(net, batch):
    x, t = batch
    params = net.init(jax.random.key(1), dtype=jnp.float64)
    gradient = jax.jit(net.gradient, static_argnames="method")
    grads = {m: gradient(params, x, t, method=m) for m in GRADIENT_METHODS}
    for m in ("backprop", "autodiff"):
        chex.assert_trees_all_close(grads[m], grads["manual"], rtol=1e-10, atol=1e-14)
    chex.assert_trees_all_close(grads["numerical"], grads["manual"], rtol=1e-5, atol=1e-8)


def test_weight_decay_is_the_books_term_and_gradient(batch):
    x, t = batch
    plain = SMALL_NETS["relu-7-6-5"].replace(weight_decay=0.0)
    decayed = plain.replace(weight_decay=0.3)
    params = plain.init(jax.random.key(2), dtype=jnp.float64)
    weights = sum(jnp.sum(params[w] ** 2) for w in ("W1", "W2", "W3", "W4"))
    np.testing.assert_allclose(
        decayed.loss(params, x, t), plain.loss(params, x, t) + 0.5 * 0.3 * weights, rtol=1e-12
    )
    g_plain, g_decayed = plain.backprop(params, x, t), decayed.backprop(params, x, t)
    for name in params:  # lambda * W on the weights; biases untouched
        extra = 0.3 * params[name] if name.startswith("W") else 0.0
        np.testing.assert_allclose(g_decayed[name], g_plain[name] + extra, rtol=1e-10, atol=1e-14)


def test_backprop_uses_no_autodiff(batch, monkeypatch):
    x, t = batch
    net = SMALL_NETS["weight-decay"]
    params = net.init(jax.random.key(0), dtype=jnp.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("backprop must not call jax.grad or jax.vjp")

    monkeypatch.setattr(jax, "grad", refuse)
    monkeypatch.setattr(jax, "vjp", refuse)
    monkeypatch.setattr(jax, "value_and_grad", refuse)
    grads = net.backprop(params, x, t)
    assert list(grads) == list(params)


def test_predict_accuracy_and_one_hot_labels(batch):
    x, t = batch
    net = SMALL_NETS["two_layer"]
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    scores = net.predict(params, x)
    assert scores.shape == (3, 4)
    expected = jnp.mean(jnp.argmax(scores, 1) == t)
    assert net.accuracy(params, x, t) == expected
    assert net.accuracy(params, x, jax.nn.one_hot(t, 4)) == expected
    np.testing.assert_allclose(
        net.loss(params, x, t), funcbp.softmax_with_loss(scores, t), rtol=1e-12
    )
    # Train mode returns the new layer state too (none here).
    (loss, state) = net.loss(params, x, t, train=True)
    assert state == {} and loss == net.loss(params, x, t)


def test_init_scales_dtypes_and_the_books_names():
    params = two_layer.init(jax.random.key(0))
    assert list(params) == ["W1", "b1", "W2", "b2"]
    chex.assert_shape(
        [params["W1"], params["b1"], params["W2"], params["b2"]],
        [(784, 50), (50,), (50, 10), (10,)],
    )
    assert float(jnp.std(params["W1"])) == pytest.approx(0.01, rel=0.05)
    assert not jnp.any(params["b1"]) and params["W1"].dtype == jnp.float32
    wide = network([400]).init(jax.random.key(0), dtype=jnp.float64)
    assert wide["W1"].dtype == jnp.float64
    assert float(jnp.std(wide["W1"])) == pytest.approx((2 / 784) ** 0.5, rel=0.05)  # He
    assert float(jnp.std(wide["W2"])) == pytest.approx((2 / 400) ** 0.5, rel=0.1)
    sig = network([400], "sigmoid").init(jax.random.key(0))
    assert float(jnp.std(sig["W1"])) == pytest.approx((1 / 784) ** 0.5, rel=0.05)  # Xavier
    fixed = network([400]).init(jax.random.key(0), weight_init_std=0.5)
    assert float(jnp.std(fixed["W1"])) == pytest.approx(0.5, rel=0.05)


def test_check_params_names_the_wrong_entry():
    params = two_layer.init(jax.random.key(0))
    two_layer.check_params(params)
    with pytest.raises(
        ValueError, match=r"params\['W1'\] must have shape \(784, 50\).*got \(784, 60\)"
    ):
        two_layer.check_params({**params, "W1": jnp.zeros((784, 60))})
    with pytest.raises(ValueError, match="params must hold W1, b1, W2, b2, got"):
        two_layer.check_params({"W1": params["W1"]})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: network([0]), "hidden_sizes must be positive integers"),
        (lambda: network([]), "hidden_sizes must be positive integers"),
        (lambda: network([5], "tanh"), "activation must be one of relu, sigmoid, got 'tanh'"),
        (lambda: two_layer_net(784, 0), "hidden_size and output_size must be positive"),
        (lambda: two_layer_net(weight_init_std=-1), "weight_init_std must be a positive finite"),
        (lambda: two_layer_net(weight_init_std=float("inf")), "weight_init_std must be"),
        (lambda: network([5], weight_decay=-1.0), "weight_decay must be a finite number >= 0"),
        (lambda: two_layer.init(jax.random.key(0), weight_init_std="wide"), "weight_init_std"),
        (lambda: two_layer.gradient({}, None, None, method="magic"), "method must be one of"),
    ],
)
def test_bad_network_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_network_is_static_for_jit():
    # Frozen and hashable: jit can take the network itself as a static argument.
    assert isinstance(two_layer, Network) and hash(two_layer) == hash(two_layer_net())
    loss = jax.jit(lambda net, p, x, t: net.loss(p, x, t), static_argnums=0)
    params = two_layer.init(jax.random.key(0))
    x, t = jnp.zeros((2, 784), jnp.float32), jnp.array([1, 2])
    assert loss(two_layer, params, x, t) == pytest.approx(np.log(10), rel=1e-3)
