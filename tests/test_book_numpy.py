"""The book's optimizers, Trainer and helpers: the same steps as optax, the book's schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcbp import book_numpy


def _quadratic_grads(params):
    # The gradient of sum(c * p**2 / 2) for fixed c: a different curvature per entry.
    return {k: (1.0 + np.arange(v.size).reshape(v.shape)) * v for k, v in params.items()}


# The book's optimizer, optax's twin (BOOK-FACTS), and how close 20 steps agree.
OPTAX_TWINS = [
    ("sgd", {"lr": 0.05}, optax.sgd(0.05), 1e-12),
    ("momentum", {"lr": 0.05}, optax.sgd(0.05, momentum=0.9), 1e-12),
    ("nesterov", {"lr": 0.05}, optax.sgd(0.05, momentum=0.9, nesterov=True), 1e-12),
    ("adagrad", {"lr": 0.1}, optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-7), 1e-7),
    ("rmsprop", {"lr": 0.01}, optax.rmsprop(0.01, decay=0.99, eps=1e-7, eps_in_sqrt=False), 1e-12),
    # The book folds the bias correction into the rate, so its eps weighs a little differently.
    ("adam", {"lr": 0.01}, optax.adam(0.01, eps=1e-7), 2e-6),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "twin", "atol"), OPTAX_TWINS, ids=[row[0] for row in OPTAX_TWINS]
)
def test_each_optimizer_takes_optax_twins_steps(name, kwargs, twin, atol):
    rng = np.random.default_rng(0)
    start = {"W1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4)}
    book, params = book_numpy.OPTIMIZERS[name](**kwargs), {k: v.copy() for k, v in start.items()}
    ours = {k: jnp.asarray(v) for k, v in start.items()}
    state = twin.init(ours)
    for _ in range(20):
        book.update(params, _quadratic_grads(params))
        grads = {k: jnp.asarray(v) for k, v in _quadratic_grads(dict(ours)).items()}
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count with floats
            updates, state = twin.update(grads, state, ours)
        ours = optax.apply_updates(ours, updates)
    for k in start:
        np.testing.assert_allclose(params[k], ours[k], atol=atol, rtol=0, err_msg=k)
        assert not np.allclose(params[k], start[k])  # the steps moved it


def test_an_update_is_in_place_so_the_layers_see_it():
    params = book_numpy.multi_layer_params(6, [5], 3, rng=np.random.default_rng(1))
    net = book_numpy.MultiLayerNet(params, 1)
    before = net.layers["Affine1"].W.copy()
    x, t = np.random.default_rng(2).standard_normal((4, 6)), np.array([0, 1, 2, 1])
    book_numpy.SGD(0.5).update(net.params, net.gradient(x, t))
    assert net.layers["Affine1"].W is net.params["W1"]
    assert not np.allclose(net.layers["Affine1"].W, before)


def test_the_books_init_scales_and_names():
    rng = np.random.default_rng(3)
    he = book_numpy.multi_layer_params(784, [100, 100], 10, "relu", rng=rng)
    assert list(he) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert he["W1"].shape == (784, 100) and not he["b2"].any()
    np.testing.assert_allclose(he["W1"].std(), np.sqrt(2 / 784), rtol=0.02)
    np.testing.assert_allclose(he["W2"].std(), np.sqrt(2 / 100), rtol=0.05)
    xavier = book_numpy.multi_layer_params(784, [100], 10, "xavier", rng=rng)
    np.testing.assert_allclose(xavier["W1"].std(), np.sqrt(1 / 784), rtol=0.02)
    fixed = book_numpy.multi_layer_params(784, [100], 10, 0.01, use_batchnorm=True, rng=rng)
    np.testing.assert_allclose(fixed["W2"].std(), 0.01, rtol=0.1)
    assert list(fixed)[4:] == ["gamma1", "beta1"] and (fixed["gamma1"] == 1).all()


def _trainer(epochs, n=30, batch=10, **kwargs):
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((n, 6)), rng.integers(0, 3, n)
    net = book_numpy.MultiLayerNet(book_numpy.multi_layer_params(6, [5], 3, rng=rng), 1)
    return book_numpy.Trainer(
        net, x, t, x[:7], t[:7], epochs=epochs, mini_batch_size=batch, verbose=False,
        rng=np.random.default_rng(5), **kwargs,
    )  # fmt: skip


def test_the_trainer_runs_the_books_schedule():
    trainer = _trainer(epochs=4, optimizer="adam", optimizer_param={"lr": 0.01})
    trainer.train()
    # 30 examples in batches of 10: 3 iterations an epoch, 12 in all, an evaluation
    # after the updates of iterations 0, 3, 6 and 9.
    assert trainer.max_iter == 12 and len(trainer.train_loss_list) == 12
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 4
    assert trainer.optimizer.iter == 12
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]


def test_a_trainer_step_is_the_books_sgd_step_on_its_minibatch():
    trainer = _trainer(epochs=1, optimizer="sgd", optimizer_param={"lr": 0.1})
    before = {k: v.copy() for k, v in trainer.network.params.items()}
    batch = np.random.default_rng(5).choice(30, 10)  # the draw the trainer's rng makes
    expected = dict(before)
    grads = book_numpy.MultiLayerNet(expected, 1).gradient(
        trainer.x_train[batch], trainer.t_train[batch]
    )
    expected = {k: before[k] - 0.1 * grads[k] for k in before}
    trainer.train_step()
    for k in before:
        np.testing.assert_allclose(trainer.network.params[k], expected[k], rtol=1e-12)


def test_smooth_curve_keeps_the_length_and_a_constant():
    assert book_numpy.smooth_curve(np.full(50, 2.3)).shape == (50,)
    np.testing.assert_allclose(book_numpy.smooth_curve(np.full(50, 2.3)), 2.3)
    noisy = np.sin(np.arange(200) / 20) + np.random.default_rng(6).normal(0, 0.3, 200)
    assert np.std(np.diff(book_numpy.smooth_curve(noisy))) < np.std(np.diff(noisy)) / 3


def test_shuffle_dataset_moves_x_and_t_together():
    x = np.arange(20).reshape(10, 2)
    xs, ts = book_numpy.shuffle_dataset(x, np.arange(10), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(xs[:, 0] // 2, ts)
    assert sorted(ts) == list(range(10)) and list(ts) != list(range(10))


class _VFirstNesterov(book_numpy.Nesterov):
    """A broken twin: v updated before the step (the Korean edition's order)."""

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


def test_the_comparison_catches_nesterov_in_the_other_order(monkeypatch):
    monkeypatch.setitem(book_numpy.OPTIMIZERS, "nesterov", _VFirstNesterov)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        test_each_optimizer_takes_optax_twins_steps(*OPTAX_TWINS[2])


def test_batch_norm_train_is_the_scripts_loop_over_two_nets():
    data = np.random.default_rng(1)
    x, t = data.random((200, 784)), data.integers(0, 10, 200)
    normal, bn = book_numpy.batch_norm_train(0.01, x, t, max_epochs=3, rng=np.random.default_rng(0))
    assert len(normal) == len(bn) == 3  # one accuracy per epoch, each of 200 rows
    assert all(round(a * 200) == a * 200 and 0 <= a <= 1 for a in normal + bn)
    again = book_numpy.batch_norm_train(0.01, x, t, max_epochs=3, rng=np.random.default_rng(0))
    assert again == (normal, bn)  # the draws are the rng's alone
