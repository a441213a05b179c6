"""TrainConfig: the recipes fill what is unset, bad values are refused, --resume's rules."""

import chex
import jax.numpy as jnp
import optax
import pytest

from funcbp.config import MAX_SEED, OPTIMIZERS, RECIPES, RESUMABLE, TrainConfig, make_optimizer


def test_the_default_is_the_books_train_neuralnet():
    c = TrainConfig()
    assert (c.model, c.optimizer, c.lr, c.iters, c.batch_size) == (
        "two-layer",
        "sgd",
        0.1,
        10_000,
        100,
    )
    assert (c.hidden, c.activation, c.weight_init_std) == ((50,), "relu", 0.01)
    assert c.network.name == "two-layer"
    assert [s.shape for s in c.network.param_specs] == [(784, 50), (50,), (50, 10), (10,)]


def test_recipes_fill_only_what_is_unset():
    c = TrainConfig(model="multi-layer", activation="sigmoid")
    assert (c.optimizer, c.lr, c.hidden, c.weight_init_std) == ("adam", 0.001, (100,) * 4, "xavier")
    assert (c.iters, c.epochs) == (None, 20)
    # Another optimizer takes the book's default rate for it, not the recipe's.
    assert TrainConfig(optimizer="momentum").lr == 0.01
    assert TrainConfig(optimizer="adam").lr == 0.001
    assert TrainConfig(lr=0.5).lr == 0.5


def test_epochs_become_iterations_once_the_data_is_known():
    c = TrainConfig(model="multi-layer")
    assert c.resolved(4000).iters == 800  # 20 epochs of 4000 / 100
    assert TrainConfig(epochs=2.5, batch_size=64).resolved(4000).iters == 157  # ceil(2.5 * 62.5)
    assert TrainConfig(iters=7).resolved(4000).iters == 7
    assert TrainConfig(epochs=1, batch_size=100).resolved(50).iters == 1  # max(50 / 100, 1)
    assert (
        TrainConfig().eval_interval(4000) == 40
        and TrainConfig(eval_every=7).eval_interval(4000) == 7
    )


BAD = [
    ({"model": "resnet"}, "model must be one of two-layer"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"weight_init_std": float("inf")}, "weight_init_std must be a finite number > 0"),
    ({"weight_init_std": "wide"}, "weight_init_std must be a positive finite number, 'he'"),
    ({"epochs": float("inf")}, "epochs must be a finite number > 0"),
    ({"iters": 5, "epochs": 2}, "iters and epochs both set the length"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd"),
    ({"hidden": (0,)}, "hidden_size and output_size must be positive|hidden"),
    ({"hidden": (50, 50)}, "hidden must be one width for two-layer"),
    ({"activation": "tanh"}, "activation must be one of relu, sigmoid"),
    ({"grad": "numerical"}, "grad must be one of manual, backprop, autodiff"),
    ({"iters": 0}, "iters must be an integer >= 1, got 0"),
    ({"eval_every": 0}, "eval_every must be an integer >= 1"),
    ({"seeds": 0}, "seeds must be an integer >= 1"),
    ({"seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
    ({"seed": 2**32}, r"seed must be an integer in \[0, 4294967295\], got 4294967296"),
    ({"seed": 10**20}, r"seed must be an integer in \[0, 4294967295\]"),
    ({"seed": MAX_SEED, "seeds": 2}, "seed \\+ seeds - 1 must be at most 4294967295"),
    ({"shared_batches": True}, "shared_batches needs seeds > 1"),
    ({"dropout": 0.5}, "dropout applies to model multi-layer, not two-layer"),
    ({"model": "multi-layer", "dropout": 1.0}, r"dropout must be a ratio in \[0, 1\)"),
    ({"weight_decay": 0.1}, "weight_decay applies to model multi-layer"),
    ({"model": "multi-layer", "weight_decay": float("inf")}, "weight_decay must be a finite"),
    ({"mesh_axes": "manual"}, "mesh_axes must be one of explicit, auto"),
    ({"devices": 0}, "devices must be an integer >= 1"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_config_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_round_trip_through_json_form():
    c = TrainConfig(model="multi-layer", hidden=(30, 20), iters=50, seeds=3, shared_batches=True)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["hidden"] == [30, 20]
    with pytest.raises(ValueError, match="config has unknown fields colour"):
        TrainConfig.from_dict({**c.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="config must be a JSON object, got list"):
        TrainConfig.from_dict([])


def test_resume_honours_how_the_run_runs_and_refuses_what_it_computes():
    c = TrainConfig(iters=100, eval_every=10)
    assert set(RESUMABLE) == {"iters", "epochs", "eval_every", "devices", "mesh_axes"}
    more = c.resumed({"iters": 300, "eval_every": 20, "devices": 2, "mesh_axes": "auto"})
    assert (more.iters, more.eval_every, more.devices, more.mesh_axes) == (300, 20, 2, "auto")
    assert c.resumed({"epochs": 3}).resolved(4000).iters == 120
    # Giving a setting again with its own value is no change.
    assert c.resumed({"lr": 0.1, "optimizer": "sgd", "hidden": (50,), "seed": 0}) == c
    for name, value in [
        ("lr", 0.5),
        ("optimizer", "adam"),
        ("model", "multi-layer"),
        ("data", "mnist"),
        ("batch_size", 50),
        ("seeds", 2),
        ("seed", 1),
        ("grad", "backprop"),
        ("hidden", (60,)),
    ]:
        with pytest.raises(ValueError, match=f"{name} cannot change on resume"):
            c.resumed({name: value})


def test_optimizers_match_the_books_defaults_and_update_rules():
    assert {k: v[0] for k, v in OPTIMIZERS.items()} == {
        "sgd": 0.1,
        "momentum": 0.01,
        "nesterov": 0.01,
        "adagrad": 0.01,
        "rmsprop": 0.01,
        "adam": 0.001,
    }
    # Momentum as the book writes it: v = 0.9 v - lr g; w += v.
    opt, w, v = make_optimizer("momentum", 0.1), jnp.array([1.0]), jnp.array([0.0])
    state, book_w = opt.init(w), w
    for g in (jnp.array([0.5]), jnp.array([-0.2]), jnp.array([0.3])):
        updates, state = opt.update(g, state, w)
        w = optax.apply_updates(w, updates)
        v = 0.9 * v - 0.1 * g
        book_w = book_w + v
    chex.assert_trees_all_close(w, book_w, rtol=1e-6)


def test_every_recipe_builds_its_network():
    for model in RECIPES:
        assert TrainConfig(model=model).network.name == model
