"""The book's networks: its names and shapes, its numbers, and four gradient methods that agree."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcbp
from funcbp import book_numpy
from funcbp.net import GRADIENT_METHODS
from funcbp.zoo import (
    deep_convnet,
    deep_convnet_net,
    network,
    simple_convnet,
    simple_convnet_net,
)

pytestmark = pytest.mark.slow  # whole networks, compiled per gradient method


def _numpy(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _images(n, shape=(1, 28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, *shape)), rng.integers(0, 10, n).astype(np.int32)


def _masks(net, key, x, params, state=None):
    """The dropout masks funcbp draws: uniform(fold_in(key, k)) > rate at the k-th dropout."""
    masks, h, k = [], jnp.asarray(x), 0
    for layer in net.layers:
        layer_key = None
        if layer.random:
            k += 1
            layer_key = jax.random.fold_in(key, k)
            rate = dict(layer.options)["rate"]
            masks.append(np.asarray(jax.random.uniform(layer_key, h.shape) > rate))
        h, _ = layer(h, params, state or {}, layer_key, train=True)
    return masks


def _off_the_kinks(net, seed):
    """Params with nonzero biases: a zero bias puts every all-padding window of a
    convolution exactly at ReLU's kink, where finite differences mean nothing."""
    params = net.init(jax.random.key(seed), dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    return {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}


def test_the_books_names_and_shapes():
    assert funcbp.simple_convnet is simple_convnet and funcbp.deep_convnet is deep_convnet
    simple = {s.name: s.shape for s in simple_convnet.param_specs}
    assert simple == {
        "W1": (30, 1, 5, 5),
        "b1": (30,),
        "W2": (4320, 100),
        "b2": (100,),
        "W3": (100, 10),
        "b3": (10,),
    }
    deep = {s.name: s.shape for s in deep_convnet.param_specs}
    assert deep["W1"] == (16, 1, 3, 3) and deep["W4"] == (32, 32, 3, 3)
    assert deep["W7"] == (1024, 50) and deep["W8"] == (50, 10) and len(deep) == 16
    # He init with the book's fan-ins.
    fan_ins = [s.fan_in for s in deep_convnet.param_specs if s.init == "normal"]
    assert fan_ins == [9, 144, 144, 288, 288, 576, 1024, 50]
    extend = network([5, 4], batch_norm=True, dropout=0.5, input_size=6, output_size=3)
    assert [s.name for s in extend.param_specs] == [
        "W1",
        "b1",
        "gamma1",
        "beta1",
        "W2",
        "b2",
        "gamma2",
        "beta2",
        "W3",
        "b3",
    ]
    assert [s.name for s in extend.state_specs] == [
        "running_mean1",
        "running_var1",
        "running_mean2",
        "running_var2",
    ]
    assert [layer.name for layer in extend.layers] == [
        "Affine1",
        "BatchNorm1",
        "Relu1",
        "Dropout1",
        "Affine2",
        "BatchNorm2",
        "Relu2",
        "Dropout2",
        "Affine3",
    ]


# The book's DeepConvNet takes its sizes from the params: a small one runs the same code.
# The tests of it share its compiled programs: one per gradient method, and the NCHW one.
SMALL_DEEP = deep_convnet_net((1, 12, 12), filters=(3, 4, 5), hidden_size=6)
DEEP_GRADIENT = jax.jit(SMALL_DEEP.gradient, static_argnames="method")


def test_simple_convnet_is_the_books_forward_and_backward():
    params = simple_convnet.init(jax.random.key(1), weight_init_std=0.1, dtype=jnp.float64)
    x, t = _images(4)
    book = book_numpy.SimpleConvNet(_numpy(params))
    np.testing.assert_allclose(simple_convnet.predict(params, x), book.predict(x), rtol=1e-10)
    ours = jax.jit(simple_convnet.gradient)(params, x, t)
    for name, g in book.gradient(x, t).items():
        np.testing.assert_allclose(ours[name], g, rtol=1e-8, atol=1e-12, err_msg=name)


def test_deep_convnet_eval_logits_are_the_books_with_dropouts_scaling():
    params = _off_the_kinks(SMALL_DEEP, 5)
    x, _ = _images(8, (1, 12, 12), seed=6)
    book = book_numpy.DeepConvNet(_numpy(params))
    ours = jax.jit(SMALL_DEEP.predict)(params, x)
    np.testing.assert_allclose(ours, book.predict(x, train_flg=False), rtol=1e-9, atol=1e-12)
    # Eval mode scales by (1 - 0.5) twice: the logits match, not only their argmax.
    forward = jax.jit(SMALL_DEEP.forward, static_argnames="train")
    train_like, _ = forward(params, x, train=True, key=jax.random.key(0))
    assert not np.allclose(ours, train_like)
    # The book's sizes: 28x28 images through 6 convolutions to W7's 1024 inputs.
    images = _images(1)[0].astype(np.float32)
    predict = jax.jit(deep_convnet.predict)
    assert predict(deep_convnet.init(jax.random.key(0)), images).shape == (1, 10)


def test_deep_convnet_gradient_is_the_books_with_the_same_masks():
    params = _off_the_kinks(SMALL_DEEP, 5)
    x, t = _images(8, (1, 12, 12), seed=6)
    key = jax.random.key(7)
    book = book_numpy.DeepConvNet(_numpy(params))
    expected = book.gradient(x, t, masks=_masks(SMALL_DEEP, key, x, params))
    ours = DEEP_GRADIENT(params, x, t, key=key)
    for name, g in expected.items():
        np.testing.assert_allclose(ours[name], g, rtol=1e-7, atol=1e-12, err_msg=name)


def test_multi_layer_net_extend_is_the_books_in_train_and_eval_mode():
    net = network(
        [6, 5],
        "sigmoid",
        batch_norm=True,
        dropout=0.3,
        weight_decay=0.05,
        input_size=12,
        output_size=4,
    )
    params = net.init(jax.random.key(2), dtype=jnp.float64)
    rng = np.random.default_rng(3)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    state = {s.name: jnp.asarray(rng.uniform(0.5, 1.5, s.shape)) for s in net.state_specs}
    x, t = rng.standard_normal((5, 12)), rng.integers(0, 4, 5).astype(np.int32)
    key = jax.random.key(4)

    def book():
        running = {k: np.array(v) for k, v in state.items()}
        return book_numpy.MultiLayerNetExtend(
            _numpy(params),
            2,
            "sigmoid",
            0.05,
            use_dropout=True,
            dropout_ration=0.3,
            use_batchnorm=True,
            running=running,
        )

    np.testing.assert_allclose(net.predict(params, x, state), book().predict(x), rtol=1e-10)
    # funcbp's loss is an exact log-softmax; the book's log(y + 1e-7) differs by ~1e-7.
    np.testing.assert_allclose(net.loss(params, x, t, state), book().loss(x, t), rtol=1e-6)
    masks = _masks(net, key, x, params, state)
    numpy_net = book()
    expected = numpy_net.gradient(x, t, masks=masks)
    (loss, new_state), ours = net.value_and_grad(params, x, t, state, key=key)
    for name, g in expected.items():
        np.testing.assert_allclose(ours[name], g, rtol=1e-8, atol=1e-12, err_msg=name)
    # Train mode updates the running statistics as the book does: 0.9 old + 0.1 batch.
    for i in (1, 2):
        bn = numpy_net.layers[f"BatchNorm{i}"]
        np.testing.assert_allclose(new_state[f"running_mean{i}"], bn.running_mean, rtol=1e-10)
        np.testing.assert_allclose(new_state[f"running_var{i}"], bn.running_var, rtol=1e-10)
    np.testing.assert_allclose(loss, book().loss(x, t, train_flg=True, masks=masks), rtol=1e-6)


SHRUNKEN = {
    "simple_convnet": simple_convnet_net(
        (1, 8, 8), filters=3, hidden_size=5, output_size=4, weight_init_std=0.3
    ),
    "deep_convnet": SMALL_DEEP,
    "multi_layer_extend": network(
        [6, 5], batch_norm=True, dropout=0.3, weight_decay=0.1, input_size=8, output_size=4
    ),
}


@pytest.mark.parametrize("name", SHRUNKEN)
def test_the_four_gradient_methods_agree_on_shrunken_nets(name):
    net = SHRUNKEN[name]
    params = _off_the_kinks(net, 5)
    # Batch norm needs a batch of 8: with 3 its curvature defeats finite differences at
    # h = 1e-4. The conv nets take 3: every max-pool window whose two largest values lie
    # within h of each other is a kink that finite differences cross, and these images
    # have none (a batch of 8 has a few).
    x, t = _images(8 if net.state_specs else 3, net.input_shape, seed=6)
    state = net.init_state(jnp.float64) if net.state_specs else None
    key = jax.random.key(8)
    gradient = (
        DEEP_GRADIENT if net is SMALL_DEEP else jax.jit(net.gradient, static_argnames="method")
    )
    grads = {m: gradient(params, x, t % 4, state, key=key, method=m) for m in GRADIENT_METHODS}
    for m in ("backprop", "autodiff"):
        chex.assert_trees_all_close(grads[m], grads["manual"], rtol=1e-9, atol=1e-13)
    chex.assert_trees_all_close(grads["numerical"], grads["manual"], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "fast", [simple_convnet_net(weight_init_std=0.1), SMALL_DEEP], ids=["simple", "deep"]
)
def test_the_channels_last_fast_path_equals_the_books_layout(fast):
    book_layout = dataclasses.replace(
        fast, layers=tuple(_in_nchw(layer) for layer in fast.layers if layer.name[:2] != "To")
    )
    assert [layer.name for layer in fast.layers if layer.name[:2] == "To"] == ["ToNHWC", "ToNCHW"]
    params = _off_the_kinks(fast, 0)
    x, t = _images(8, fast.input_shape, seed=6)
    key = jax.random.key(7)
    np.testing.assert_allclose(
        fast.predict(params, x), book_layout.predict(params, x), rtol=1e-10, atol=1e-14
    )
    g_fast = DEEP_GRADIENT(params, x, t, key=key) if fast is SMALL_DEEP else None
    g_fast = g_fast if g_fast is not None else jax.jit(fast.gradient)(params, x, t, key=key)
    g_book = jax.jit(book_layout.gradient)(params, x, t, key=key)
    chex.assert_trees_all_close(g_fast, g_book, rtol=1e-9, atol=1e-13)
    # The builders make the same NCHW net.
    assert book_layout == (
        deep_convnet_net((1, 12, 12), filters=(3, 4, 5), hidden_size=6, layout="NCHW")
        if fast is SMALL_DEEP
        else simple_convnet_net(weight_init_std=0.1, layout="NCHW")
    )


def _in_nchw(layer):
    options = tuple((k, "NCHW" if k == "layout" else v) for k, v in layer.options)
    return dataclasses.replace(layer, options=options)


def test_state_and_keys_are_asked_for_by_name():
    net = network([4], batch_norm=True, dropout=0.5, input_size=3, output_size=2)
    params = net.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3)), jnp.float32)
    with pytest.raises(ValueError, match="state must hold running_mean1, running_var1"):
        net.predict(params, x)
    state = net.init_state()
    with pytest.raises(ValueError, match="key must be a PRNG key: multi-layer has dropout"):
        net.predict(params, x, state, train=True)
    out, new_state = net.predict(params, x, state, train=True, key=jax.random.key(0))
    assert out.shape == (2, 2) and set(new_state) == set(state)
    assert not np.allclose(new_state["running_var1"], state["running_var1"])
    # Eval mode needs no key and leaves the statistics alone.
    chex.assert_trees_all_equal(net.predict(params, x, state), net.predict(params, x, state))


def test_book_shaped_params_go_straight_in_and_others_are_named():
    rng = np.random.default_rng(0)
    book = {
        s.name: rng.standard_normal(s.shape).astype(np.float32) for s in simple_convnet.param_specs
    }
    simple_convnet.check_params(book)
    assert simple_convnet.predict(book, np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 28, 28\) for simple-convnet"):
        simple_convnet.predict(book, np.zeros((1, 784), np.float32))
    with pytest.raises(ValueError, match=r"params\['W2'\] must have shape \(4320, 100\)"):
        simple_convnet.check_params({**book, "W2": book["W2"][:100]})


# --- the registry ------------------------------------------------------------------------


def test_the_registry_is_the_one_list_of_models():
    from funcbp import bench, zoo
    from funcbp.config import OPTIMIZERS

    assert list(zoo.MODELS) == ["two-layer", "multi-layer", "simple-convnet", "deep-convnet"]
    for name, entry in zoo.MODELS.items():
        net = zoo.build(name)
        assert net.name == name and entry.recipe.optimizer in OPTIMIZERS
        params = net.init(jax.random.key(0))
        assert zoo.network_for(name, {**params, **net.init_state()}).param_specs == net.param_specs
    assert set(bench.MODELS) <= set(zoo.MODELS)
    assert bench.MODELS["simple-convnet"].net.param_specs == simple_convnet.param_specs


def test_an_option_that_does_not_apply_is_refused_naming_who_takes_it():
    from funcbp import zoo

    with pytest.raises(ValueError, match="batch_norm applies to multi-layer, not simple-convnet"):
        zoo.build("simple-convnet", {"batch_norm": True})
    with pytest.raises(ValueError, match="model must be one of two-layer, multi-layer"):
        zoo.build("resnet")
    extend = network([30, 20], batch_norm=True)
    saved = {**extend.init(jax.random.key(0)), **extend.init_state()}
    wide = zoo.network_for("multi-layer", saved)
    assert [s.shape for s in wide.param_specs][:4] == [(784, 30), (30,), (30,), (30,)]
