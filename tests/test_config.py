"""TrainConfig and resolve: what was given stays as given, the recipe fills the rest, sweeps."""

import dataclasses

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcbp import zoo
from funcbp.config import (
    MAX_SEED,
    OPTIMIZERS,
    RESUMABLE,
    Range,
    TrainConfig,
    make_optimizer,
    resolve,
)


def _values(config, name, train_size=4000):
    return [m[name] for m in resolve(config, train_size).models]


def test_the_default_is_the_books_train_neuralnet():
    run = resolve(TrainConfig(), 4000)
    assert (run.config.model, run.optimizer, run.iters, run.config.batch_size) == (
        "two-layer",
        "sgd",
        10_000,
        100,
    )
    assert run.models == ({"seed": 0, "lr": 0.1, "weight_init_std": 0.01},)
    assert run.architecture == {"hidden": (50,)}
    net = run.network()
    assert net.name == "two-layer"
    assert [s.shape for s in net.param_specs] == [(784, 50), (50,), (50, 10), (10,)]


def test_a_config_holds_what_was_given_so_replace_is_always_safe():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.hidden, c.iters, c.epochs) == (None,) * 5  # never filled in
    # The new optimizer's recipe applies: Adam's 0.001, not SGD's resolved 0.1.
    adam = resolve(dataclasses.replace(TrainConfig(iters=40), optimizer="adam"), 4000)
    assert (adam.optimizer, adam.models[0]["lr"]) == ("adam", 0.001)
    # Another model takes its own options: no MLP hidden sizes follow it.
    conv = resolve(dataclasses.replace(c, model="simple-convnet"), 4000)
    assert conv.architecture == {} and conv.network().name == "simple-convnet"
    assert (conv.optimizer, conv.iters, conv.eval_samples) == ("adam", 800, 1000)


def test_recipes_fill_only_what_is_unset():
    run = resolve(TrainConfig(model="multi-layer", activation="sigmoid"), 4000)
    assert run.optimizer == "adam" and run.architecture["hidden"] == (100,) * 4
    assert run.models[0]["weight_init_std"] == "xavier"  # the book's advice for sigmoid
    assert run.iters == 800
    # Another optimizer takes the book's default rate for it, not the recipe's.
    assert _values(TrainConfig(optimizer="momentum"), "lr") == [0.01]
    assert _values(TrainConfig(optimizer="momentum"), "momentum") == [0.9]
    assert _values(TrainConfig(lr=0.5), "lr") == [0.5]


def test_epochs_become_iterations_once_the_data_is_known():
    assert resolve(TrainConfig(model="multi-layer"), 4000).iters == 800  # 20 epochs of 40
    assert resolve(TrainConfig(epochs=2.5, batch_size=64), 4000).iters == 157  # ceil(2.5 * 62.5)
    assert resolve(TrainConfig(iters=7), 4000).iters == 7
    assert resolve(TrainConfig(epochs=1, batch_size=100), 50).iters == 1  # max(50 / 100, 1)
    assert resolve(TrainConfig(), 4000).eval_every == 40
    assert resolve(TrainConfig(eval_every=7), 4000).eval_every == 7


BAD = [
    ({"model": "resnet"}, "model must be one of two-layer"),
    ({"model": "two-layer,multi-layer"}, "model does not vary within a run"),
    ({"optimizer": "sgd,adam"}, "optimizer does not vary within a run"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"lr": (0.1, 0.0)}, "lr must be a finite number > 0, got 0.0"),
    ({"weight_init_std": float("inf")}, "weight_init_std must be a positive finite number"),
    ({"weight_init_std": "wide"}, "weight_init_std must be a positive finite number, 'he'"),
    ({"epochs": float("inf")}, "epochs must be a finite number > 0"),
    ({"iters": 5, "epochs": 2}, "iters and epochs both set the length"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd"),
    ({"momentum": 0.5}, "momentum applies to optimizer momentum and nesterov, not sgd"),
    ({"optimizer": "adam", "beta1": 1.0}, r"beta1 must be a ratio in \[0, 1\)"),
    ({"hidden": (0,)}, "must be positive integers"),
    ({"hidden": (50, 50)}, "hidden must be one width for two-layer"),
    ({"activation": "sigmoid"}, "activation applies to multi-layer, not two-layer"),
    ({"model": "multi-layer", "activation": "tanh"}, "activation must be one of relu, sigmoid"),
    ({"grad": "numerical"}, "grad must be one of manual, backprop, autodiff"),
    ({"compute_dtype": "float16"}, "compute_dtype float16 is refused for the loss and its grad"),
    ({"compute_dtype": "int8"}, "compute_dtype must be None or one of bfloat16, float16"),
    ({"iters": 0}, "iters must be an integer >= 1, got 0"),
    ({"eval_every": 0}, "eval_every must be an integer >= 1"),
    ({"seeds": 0}, "seeds must be an integer >= 1"),
    ({"seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
    ({"seed": 2**32}, r"seed must be an integer in \[0, 4294967295\], got 4294967296"),
    ({"seed": MAX_SEED, "seeds": 2}, r"seed \+ models - 1 must be at most 4294967295"),
    ({"shared_batches": True}, "shared_batches needs several models"),
    ({"dropout": 0.5}, "dropout applies to multi-layer, not two-layer"),
    ({"model": "multi-layer", "dropout": 1.0}, r"dropout must be a ratio in \[0, 1\)"),
    ({"weight_decay": 0.1}, "weight_decay applies to multi-layer, not two-layer"),
    ({"model": "simple-convnet", "hidden": (50,)}, "hidden applies to two-layer and multi-layer"),
    ({"model": "multi-layer", "weight_decay": float("inf")}, "weight_decay must be a finite"),
    ({"mesh_axes": "manual"}, "mesh_axes must be one of explicit, auto"),
    ({"devices": 0}, "devices must be an integer >= 1"),
    ({"data_size": 0}, "data_size must be an integer >= 1"),
    ({"validation": 1.0}, r"validation must be a fraction in \(0, 1\)"),
    ({"validation": 0.0}, "validation must be a finite number > 0"),
    ({"lr": ()}, "lr must hold at least one value"),
    ({"trials": 5, "lr": (0.1, 0.01)}, "trials draws each value from a range, and lr is a list"),
    ({"lr": Range(1e-6, 1e-2)}, "lr is a range .*; trials says how many"),
    ({"trials": 5}, "trials needs a range to draw from"),
    ({"trials": 0, "lr": Range(1e-6, 1e-2)}, "trials must be an integer >= 1"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_config_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_a_bad_range_is_refused():
    with pytest.raises(ValueError, match="a range's low end must be a finite number > 0"):
        Range(0.0, 1.0)
    with pytest.raises(ValueError, match=r"a range.s high end must be a finite number >= 0\.5"):
        Range(0.5, 0.1, log=False)
    with pytest.raises(ValueError, match="expected log:LOW:HIGH or uniform:LOW:HIGH"):
        Range.parse("log:1e-6")


def test_a_grid_is_the_product_times_the_seeds_each_model_its_own_seed():
    config = TrainConfig(model="multi-layer", lr=(0.1, 0.01, 0.001), weight_decay=(0, 1e-4))
    assert config.models == 6
    twice = dataclasses.replace(config, seeds=2, seed=10)
    run = resolve(twice, 4000)
    assert run.count == 12 and run.varying == ("seed", "lr", "weight_decay")
    assert [m["seed"] for m in run.models] == list(range(10, 22))
    pairs = [(m["lr"], m["weight_decay"]) for m in run.models]
    assert pairs[:4] == [(0.1, 0), (0.1, 0), (0.1, 1e-4), (0.1, 1e-4)]  # configurations, then seeds
    assert pairs[-1] == (0.001, 1e-4)


def test_trials_draw_each_value_from_the_runs_seed():
    ranges = dict(lr=Range(1e-6, 1e-2), weight_decay=Range(1e-8, 1e-4))
    config = TrainConfig(model="multi-layer", optimizer="sgd", trials=200, **ranges)
    lrs, decays = np.array(_values(config, "lr")), np.array(_values(config, "weight_decay"))
    assert lrs.shape == (200,) and np.all((lrs >= 1e-6) & (lrs <= 1e-2))
    assert np.all((decays >= 1e-8) & (decays <= 1e-4))
    # Log-uniform, as the book's 10 ** uniform(-6, -2): half below 1e-4, the middle.
    assert 0.35 < np.mean(lrs < 1e-4) < 0.65
    assert _values(config, "lr") == lrs.tolist()  # the same seed, the same trials
    other = _values(dataclasses.replace(config, seed=1), "lr")
    assert other != lrs.tolist()
    linear = _values(dataclasses.replace(config, lr=Range(0.1, 0.2, log=False)), "lr")
    assert 0.13 < np.mean(linear) < 0.17


def test_round_trip_through_json_form():
    c = TrainConfig(model="multi-layer", hidden=(30, 20), iters=50, seeds=3, shared_batches=True)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["hidden"] == [30, 20]
    sweep = TrainConfig(trials=4, lr=Range(1e-6, 1e-2), weight_init_std=0.01)
    assert sweep.to_dict()["lr"] == "log:1e-06:0.01"
    assert TrainConfig.from_dict(sweep.to_dict()) == sweep
    grid = TrainConfig(weight_init_std=(0.01, "he"))
    assert TrainConfig.from_dict(grid.to_dict()) == grid
    with pytest.raises(ValueError, match="config has unknown fields colour"):
        TrainConfig.from_dict({**c.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="config must be a JSON object, got list"):
        TrainConfig.from_dict([])


def test_resume_honours_how_the_run_runs_and_refuses_what_it_computes():
    c = TrainConfig(iters=100, eval_every=10)
    assert set(RESUMABLE) == {"iters", "epochs", "eval_every", "devices", "mesh_axes"}
    more = c.resumed({"iters": 300, "eval_every": 20, "devices": 2, "mesh_axes": "auto"})
    assert (more.iters, more.eval_every, more.devices, more.mesh_axes) == (300, 20, 2, "auto")
    assert resolve(c.resumed({"epochs": 3}), 4000).iters == 120
    # Giving a setting again with the value it resolved to is no change.
    same = {"lr": 0.1, "optimizer": "sgd", "hidden": (50,), "seed": 0, "weight_init_std": 0.01}
    assert c.resumed(same) == c
    for name, value, shown in [
        ("lr", 0.5, "the run has 0.1, got 0.5"),
        ("optimizer", "adam", "the run has sgd, got adam"),
        ("model", "multi-layer", "the run has two-layer"),
        ("data", "mnist", "the run has mnist-5k"),
        ("batch_size", 50, "the run has 100"),
        ("seeds", 2, "the run has 1"),
        ("seed", 1, "the run has 0"),
        ("grad", "backprop", "the run has manual"),
        ("hidden", (60,), "the run has 50, got 60"),
        ("validation", 0.2, "the run has None"),
    ]:
        with pytest.raises(ValueError, match=f"{name} cannot change on resume \\({shown}"):
            c.resumed({name: value})


def test_optimizers_match_the_books_defaults_and_keep_their_values_in_the_state():
    assert {k: v.lr for k, v in OPTIMIZERS.items()} == {
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
    assert set(state.hyperparams) == {"learning_rate", "momentum"}
    for g in (jnp.array([0.5]), jnp.array([-0.2]), jnp.array([0.3])):
        updates, state = opt.update(g, state, w)
        w = optax.apply_updates(w, updates)
        v = 0.9 * v - 0.1 * g
        book_w = book_w + v
    chex.assert_trees_all_close(w, book_w, rtol=1e-6)
    adam = resolve(TrainConfig(optimizer="adam", beta1=(0.8, 0.9)), 4000)
    assert adam.optimizer_values() == {
        "learning_rate": [0.001, 0.001],
        "beta1": [0.8, 0.9],
        "beta2": [0.999, 0.999],
    }


def test_every_model_of_the_registry_resolves_and_builds():
    for model in zoo.MODELS:
        assert resolve(TrainConfig(model=model), 4000).network().name == model
