"""The jitted pieces: the init, the minibatch draw, chunks of steps, K models in one program."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcbp import steps
from funcbp.config import make_optimizer
from funcbp.data import load_mnist
from funcbp.steps import (
    init_params,
    init_train_state,
    make_chunk,
    minibatch_indices,
    run_keys,
)
from funcbp.zoo import network, simple_convnet_net, two_layer_net

pytestmark = pytest.mark.slow  # compiled chunks of training steps


SMALL = two_layer_net(8, 4, 3)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(30, 8)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 3, 30), jnp.int32)
    return x, t


@pytest.fixture(scope="module")
def mnist():
    (x, t), _ = load_mnist("mnist-5k")
    return jnp.asarray(x), jnp.asarray(t)


def _state(net, opt, seed=0, models=1, **values):
    return init_train_state(net, opt, run_keys(seed, models), models=models, **values)


def _chunk(net, *args, **kwargs):
    """make_chunk of one network (no values differ between the models)."""
    chunk = make_chunk(lambda values: net, *args, **kwargs)
    return lambda state, start, keys, x, t, length: chunk(state, start, keys, {}, x, t, length)


def test_the_draw_is_a_function_of_the_key_and_the_step_only():
    key = run_keys(0).data
    whole = minibatch_indices(key, 0, 12, 5, 30)
    assert whole.shape == (12, 5) and whole.dtype == jnp.int32
    assert int(whole.min()) >= 0 and int(whole.max()) < 30
    chex.assert_trees_all_equal(minibatch_indices(key, 4, 8, 5, 30), whole[4:])
    with jax.enable_x64(False):  # the same draw whether x64 is on or not
        chex.assert_trees_all_equal(np.asarray(minibatch_indices(key, 0, 12, 5, 30)), whole)


def test_chunks_do_not_retrace(tiny):
    x, t = tiny
    opt = make_optimizer("sgd")
    state, keys = _state(SMALL, opt), run_keys(0)
    chunk = make_chunk(lambda values: SMALL, opt, "manual", 5)
    for start in (0, 10, 20):
        state, losses = chunk(state, start, keys, {}, x, t, 10)
    assert losses.shape == (10,)
    assert chunk._cache_size() == 1


def test_chunking_does_not_change_the_result(tiny):
    x, t = tiny
    opt = make_optimizer("momentum")
    keys, chunk = run_keys(3), _chunk(SMALL, opt, "manual", 5)
    whole, _ = chunk(_state(SMALL, opt, 3), 0, keys, x, t, 12)
    parts = _state(SMALL, opt, 3)
    for start in (0, 4, 8):
        parts, _ = chunk(parts, start, keys, x, t, 4)
    chex.assert_trees_all_equal(whole, parts)


@pytest.mark.parametrize("grad", ["autodiff", "backprop"])
def test_every_gradient_method_trains_the_same_model(tiny, grad):
    x, t = tiny
    opt = make_optimizer("sgd")
    state, keys = _state(SMALL, opt), run_keys(0)
    manual, _ = _chunk(SMALL, opt, "manual", 5)(state, 0, keys, x, t, 20)
    other, _ = _chunk(SMALL, opt, grad, 5)(state, 0, keys, x, t, 20)
    chex.assert_trees_all_close(manual, other, rtol=1e-5, atol=1e-7)


def test_own_batches_model_j_is_the_single_run_with_seed_plus_j(tiny):
    x, t = tiny
    opt = make_optimizer("adam")  # a per-model step count
    k = 3
    stacked, losses = _chunk(SMALL, opt, "manual", 5, models=k)(
        _state(SMALL, opt, 5, k), 0, run_keys(5, k), x, t, 15
    )
    assert losses.shape == (15, k)
    single = _chunk(SMALL, opt, "manual", 5)
    for j in range(k):
        alone, alone_losses = single(_state(SMALL, opt, 5 + j), 0, run_keys(5 + j), x, t, 15)
        chex.assert_trees_all_close(jax.tree.map(lambda a, j=j: a[j], stacked), alone, rtol=1e-5)
        np.testing.assert_allclose(losses[:, j], alone_losses, rtol=1e-5)


def test_many_models_take_the_vmap_path_to_the_same_runs(tiny, monkeypatch):
    x, t = tiny
    opt, k = make_optimizer("sgd"), 3
    args = (_state(SMALL, opt, 0, k), 0, run_keys(0, k), x, t, 10)
    unrolled = _chunk(SMALL, opt, "manual", 5, models=k)(*args)
    monkeypatch.setattr(steps, "UNROLL_MAX", 2)  # K=3 > 2: vmap of the single step
    vmapped = _chunk(SMALL, opt, "manual", 5, models=k)(*args)
    chex.assert_trees_all_close(unrolled, vmapped, rtol=1e-5)


def test_shared_batches_fuse_the_first_layers_into_one_matmul(mnist):
    x, t = mnist
    net, opt, k = network([16], input_size=784), make_optimizer("adam"), 2
    keys = run_keys(3, k)
    shared = make_chunk(lambda values: net, opt, "manual", 100, models=k, shared=True)
    compiled = shared.lower(_state(net, opt, 3, k), 0, keys, {}, x, t, length=20).compile()
    stacked, losses = compiled(_state(net, opt, 3, k), 0, keys, {}, x, t)
    assert losses.shape == (20, k)
    single = _chunk(net, opt, "manual", 100)
    for j in range(k):
        # Model j: its own init (seed 3+j), the first model's minibatches (seed 3).
        alone = _state(net, opt, 3 + j)
        alone_keys = run_keys(3 + j)._replace(data=run_keys(3).data)
        alone, alone_losses = single(alone, 0, alone_keys, x, t, 20)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, j=j: a[j], stacked), alone, rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(losses[:, j], alone_losses, rtol=1e-5)
    # x @ [W1_1 W1_2] and x.T @ [dh_1 dh_2]: one (100, 32) and one (784, 32) product.
    hlo = compiled.as_text()
    assert "f32[100,32]" in hlo and "f32[784,32]" in hlo
    # The twins under jax.grad take the same fused path; the explicit sweep cannot fuse.
    for grad in ("autodiff", "backprop"):
        other, _ = _chunk(net, opt, grad, 100, models=k, shared=True)(
            _state(net, opt, 3, k), 0, keys, x, t, 20
        )
        chex.assert_trees_all_close(other, stacked, rtol=1e-4, atol=1e-6)


def test_init_scales_unit_weights_and_draws_named_stds_as_net_init_does():
    net = network([6, 5], input_size=8, output_size=3)
    keys = run_keys(4, 3).init
    stacked = init_params(net, keys, [0.01, "he", 0.5])
    for j, std in enumerate([0.01, "he", 0.5]):
        alone = net.init(keys[j], weight_init_std=std)
        chex.assert_trees_all_equal(jax.tree.map(lambda a, j=j: a[j], stacked), alone)


def test_each_model_trains_with_its_own_learning_rate_in_its_optimizer_state(tiny):
    x, t = tiny
    opt, k = make_optimizer("momentum"), 2
    lrs = {"learning_rate": [0.1, 0.01], "momentum": [0.9, 0.5]}
    both, _ = _chunk(SMALL, opt, "manual", 5, models=k)(
        _state(SMALL, opt, 0, k, hyperparams=lrs), 0, run_keys(0, k), x, t, 10
    )
    for j, (lr, momentum) in enumerate([(0.1, 0.9), (0.01, 0.5)]):
        alone_opt = make_optimizer("momentum", lr, momentum=momentum)
        alone, _ = _chunk(SMALL, alone_opt, "manual", 5)(
            _state(SMALL, alone_opt, j), 0, run_keys(j), x, t, 10
        )
        chex.assert_trees_all_close(jax.tree.map(lambda a, j=j: a[j], both), alone, rtol=1e-6)
    with pytest.raises(ValueError, match="the optimizer has no hyperparameters beta1"):
        _state(SMALL, opt, 0, k, hyperparams={"beta1": [0.9, 0.9]})


def test_k_conv_nets_are_k_single_runs():
    # No first Affine to fuse: shared and own batches go through the same step per model.
    net, opt, k = simple_convnet_net((1, 8, 8), filters=3, hidden_size=5), make_optimizer("adam"), 2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(30, 1, 8, 8)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 10, 30), jnp.int32)
    for shared in (False, True):
        both, _ = _chunk(net, opt, "manual", 5, models=k, shared=shared)(
            _state(net, opt, 2, k), 0, run_keys(2, k), x, t, 6
        )
        keys = run_keys(3)._replace(data=run_keys(2).data) if shared else run_keys(3)
        alone, _ = _chunk(net, opt, "manual", 5)(_state(net, opt, 3), 0, keys, x, t, 6)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], both), alone, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("unroll", [True, False])
def test_loss_values_that_differ_are_traced_each_model_as_alone(tiny, monkeypatch, unroll):
    x, t = tiny
    if not unroll:
        monkeypatch.setattr(steps, "UNROLL_MAX", 1)  # K=4 > 1: vmap of the single step
    opt, k = make_optimizer("sgd"), 4
    decays, rates = [0.0, 0.0, 0.3, 0.3], [0.0, 0.2, 0.0, 0.2]

    def build(values):
        return network([6, 5], input_size=8, output_size=3, **values)

    values = {"weight_decay": jnp.asarray(decays), "dropout": jnp.asarray(rates)}
    chunk = make_chunk(build, opt, "manual", 5, models=k)
    both, _ = chunk(_state(build({}), opt, 0, k), 0, run_keys(0, k), values, x, t, 12)
    for j in range(k):
        net = build({"weight_decay": decays[j], "dropout": rates[j]})
        alone, _ = _chunk(net, opt, "manual", 5)(_state(net, opt, j), 0, run_keys(j), x, t, 12)
        chex.assert_trees_all_close(jax.tree.map(lambda a, j=j: a[j], both), alone, rtol=1e-5)
