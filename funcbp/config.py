"""What determines a training run: the model and its recipe, the optimizer, the data, the seeds.

:class:`TrainConfig` is validated when it is made, so a bad value is refused
before any data is read or any program compiled. Fields left as None take the
model's recipe (:data:`RECIPES`): the book's own script for that network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optax

from funcbp import zoo
from funcbp.net import GRADIENT_METHODS, Network

__all__ = [
    "MAX_SEED",
    "MESH_AXES",
    "OPTIMIZERS",
    "RECIPES",
    "RESUMABLE",
    "TRAIN_GRADIENTS",
    "Recipe",
    "TrainConfig",
    "make_optimizer",
]

# The book's defaults (ch. 6), except sgd, whose 0.1 is train_neuralnet.py's.
OPTIMIZERS: dict[str, tuple[float, Callable[[float], optax.GradientTransformation]]] = {
    "sgd": (0.1, optax.sgd),
    "momentum": (0.01, lambda lr: optax.sgd(lr, momentum=0.9)),
    "nesterov": (0.01, lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    "adagrad": (0.01, lambda lr: optax.adagrad(lr, initial_accumulator_value=0.0, eps=1e-7)),
    "rmsprop": (0.01, lambda lr: optax.rmsprop(lr, decay=0.99, eps=1e-7, eps_in_sqrt=False)),
    "adam": (0.001, lambda lr: optax.adam(lr, eps=1e-7)),
}
# Numerical gradients are for checking: 2 forward passes per parameter per step.
TRAIN_GRADIENTS = tuple(m for m in GRADIENT_METHODS if m != "numerical")
MESH_AXES = ("explicit", "auto")
MAX_SEED = 2**32 - 1  # jax.random.key takes a uint32 seed; larger ones wrap around silently
INIT_NAMES = ("he", "xavier", "relu", "sigmoid")  # the book's names for He and Xavier


def make_optimizer(name: str, lr: float | None = None) -> optax.GradientTransformation:
    """An optax optimizer by the book's name, with the book's default rate."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    default, make = OPTIMIZERS[name]
    lr = default if lr is None else lr
    _finite_positive("lr", lr)
    return make(lr)


@dataclass(frozen=True)
class Recipe:
    """A model's defaults: the book's training script for it."""

    optimizer: str
    lr: float
    iters: int | None = None
    epochs: float | None = None
    hidden: tuple[int, ...] | None = None  # MLPs only
    weight_init_std: float | str | None = None  # None: He for ReLU, Xavier for sigmoid
    eval_samples: int | None = None  # None: evaluate on every example


RECIPES: dict[str, Recipe] = {
    # train_neuralnet.py: SGD 0.1, batch 100, 10,000 iterations.
    "two-layer": Recipe("sgd", 0.1, iters=10_000, hidden=(50,), weight_init_std=0.01),
    # The book has no one script for MultiLayerNetExtend; its conv-net recipe.
    "multi-layer": Recipe("adam", 0.001, epochs=20, hidden=(100, 100, 100, 100)),
    # train_convnet.py and train_deepnet.py: Adam 0.001, 20 epochs, batch 100, and
    # the Trainer's 1000 examples per evaluation (the final one takes them all).
    "simple-convnet": Recipe("adam", 0.001, epochs=20, weight_init_std=0.01, eval_samples=1000),
    "deep-convnet": Recipe("adam", 0.001, epochs=20, weight_init_std="he", eval_samples=1000),
}
MLP_MODELS = ("two-layer", "multi-layer")

# What --resume honours: these change how a run is carried out, not what it computes.
RESUMABLE = ("iters", "epochs", "eval_every", "devices", "mesh_axes")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run; the model's recipe fills what is left as None.

    ``iters`` or ``epochs`` sets the length (not both); an epoch is the book's
    ``max(train_size / batch_size, 1)`` iterations, so ``epochs`` becomes
    iterations once the data is known (:meth:`resolved`).
    """

    model: str = "two-layer"
    data: str = "mnist-5k"
    iters: int | None = None
    epochs: float | None = None
    batch_size: int = 100
    optimizer: str | None = None
    lr: float | None = None
    hidden: tuple[int, ...] | None = None
    activation: str | None = None
    weight_init_std: float | str | None = None
    batch_norm: bool = False
    dropout: float = 0.0
    weight_decay: float = 0.0
    grad: str = "manual"
    seed: int = 0
    seeds: int = 1
    shared_batches: bool = False
    eval_every: int | None = None  # None: once per epoch
    eval_samples: int | None = None  # None: the recipe's (every example for the MLPs)
    devices: int | None = None  # None: every device (as many as divide batch_size)
    mesh_axes: str = "explicit"

    def __post_init__(self):
        if self.model not in RECIPES:
            raise ValueError(f"model must be one of {', '.join(RECIPES)}, got {self.model!r}")
        recipe = RECIPES[self.model]
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data must be a dataset name or a folder, got {self.data!r}")
        if self.iters is not None and self.epochs is not None:
            raise ValueError(
                "iters and epochs both set the length; give one, "
                f"got {self.iters} and {self.epochs}"
            )
        _optional_int("iters", self.iters)
        if self.epochs is not None:
            _finite_positive("epochs", self.epochs)
        _int("batch_size", self.batch_size, 1)
        _int("seeds", self.seeds, 1)
        _int("seed", self.seed, 0, MAX_SEED)
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise ValueError(
                f"seed + seeds - 1 must be at most {MAX_SEED} (seeds are uint32), "
                f"got {self.seed} + {self.seeds} - 1"
            )
        if self.shared_batches and self.seeds == 1:
            raise ValueError("shared_batches needs seeds > 1 (several models to share batches)")
        _optional_int("eval_every", self.eval_every)
        _optional_int("eval_samples", self.eval_samples)
        _optional_int("devices", self.devices)
        if self.mesh_axes not in MESH_AXES:
            raise ValueError(
                f"mesh_axes must be one of {', '.join(MESH_AXES)}, got {self.mesh_axes!r}"
            )
        if self.grad not in TRAIN_GRADIENTS:
            raise ValueError(
                f"grad must be one of {', '.join(TRAIN_GRADIENTS)} (numerical is for checking), "
                f"got {self.grad!r}"
            )
        self._check_model_options()

        optimizer = self.optimizer or recipe.optimizer
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if self.lr is None:
            lr = recipe.lr if optimizer == recipe.optimizer else OPTIMIZERS[optimizer][0]
        else:
            lr = self.lr
        make_optimizer(optimizer, lr)
        activation = self.activation or "relu"
        std = recipe.weight_init_std if self.weight_init_std is None else self.weight_init_std
        resolved = {
            "optimizer": optimizer,
            "lr": float(lr),
            "activation": activation,
            "eval_samples": self.eval_samples or recipe.eval_samples,
            # The book's advice when a recipe has none: He for ReLU, Xavier for sigmoid.
            "weight_init_std": std or ("he" if activation == "relu" else "xavier"),
        }
        if self.model in MLP_MODELS:
            resolved["hidden"] = tuple(self.hidden or recipe.hidden)
        if self.iters is None and self.epochs is None:
            resolved["iters"], resolved["epochs"] = recipe.iters, recipe.epochs
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def _check_model_options(self) -> None:
        mlp = self.model in MLP_MODELS
        if self.hidden is not None:
            if not mlp:
                raise ValueError(f"hidden applies to {' and '.join(MLP_MODELS)}, not {self.model}")
            object.__setattr__(self, "hidden", tuple(self.hidden))
            if not self.hidden or not all(_is_int(h) and h > 0 for h in self.hidden):
                raise ValueError(f"hidden must be positive integer widths, got {self.hidden!r}")
            if self.model == "two-layer" and len(self.hidden) != 1:
                raise ValueError(
                    f"hidden must be one width for two-layer (use model multi-layer for more), "
                    f"got {','.join(map(str, self.hidden))}"
                )
        if self.activation is not None:
            if self.activation not in zoo.ACTIVATIONS:
                raise ValueError(
                    f"activation must be one of {', '.join(zoo.ACTIVATIONS)}, "
                    f"got {self.activation!r}"
                )
            if not mlp and self.activation != "relu":
                raise ValueError(f"activation is ReLU in {self.model}, got {self.activation!r}")
        if isinstance(self.weight_init_std, str):
            if self.weight_init_std not in INIT_NAMES:
                raise ValueError(
                    f"weight_init_std must be a positive finite number, 'he' or 'xavier', "
                    f"got {self.weight_init_std!r}"
                )
        elif self.weight_init_std is not None:
            _finite_positive("weight_init_std", self.weight_init_std)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be a ratio in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.weight_decay, int | float) and 0 <= self.weight_decay < math.inf):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        extend = {
            "batch_norm": self.batch_norm,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
        }
        for name, value in extend.items():
            if value and self.model != "multi-layer":
                raise ValueError(f"{name} applies to model multi-layer, not {self.model}")

    @property
    def network(self) -> Network:
        """The model, built from this config."""
        std = self.weight_init_std
        if self.model == "two-layer":
            return zoo.two_layer_net(hidden_size=self.hidden[0], weight_init_std=std)
        if self.model == "simple-convnet":
            return zoo.simple_convnet_net(weight_init_std=std)
        if self.model == "deep-convnet":
            return zoo.deep_convnet_net(weight_init_std=std)
        options = {"batch_norm": self.batch_norm, "dropout": self.dropout}
        return zoo.network(
            self.hidden,
            self.activation,
            weight_decay=self.weight_decay,
            weight_init_std=std,
            **options,
        )

    @property
    def optimizer_fn(self) -> optax.GradientTransformation:
        return make_optimizer(self.optimizer, self.lr)

    def iter_per_epoch(self, train_size: int) -> float:
        """The book's ``max(train_size / batch_size, 1)``."""
        return max(train_size / self.batch_size, 1)

    def resolved(self, train_size: int) -> TrainConfig:
        """This config with ``epochs`` turned into ``iters`` for a training set of this size."""
        if self.iters is not None:
            return self
        iters = math.ceil(self.epochs * self.iter_per_epoch(train_size))
        return dataclasses.replace(self, iters=iters, epochs=None)

    def eval_interval(self, train_size: int) -> int:
        """Iterations between evaluations: ``eval_every``, or one epoch rounded."""
        return self.eval_every or max(round(self.iter_per_epoch(train_size)), 1)

    def resumed(self, changes: dict[str, Any]) -> TrainConfig:
        """The config to continue this run with; only :data:`RESUMABLE` fields may change.

        Raises:
            ValueError: naming the first field that would change what the run computes.
        """
        for name, value in changes.items():
            if name in RESUMABLE:
                continue
            current = getattr(self, name)
            if _normalize(value) != _normalize(current):
                raise ValueError(
                    f"{name} cannot change on resume (the run has {_show(current)}, got "
                    f"{_show(value)}); start a new run to change it"
                )
        length = {"iters": self.iters, "epochs": self.epochs}
        if "iters" in changes or "epochs" in changes:  # one replaces the other
            length = {"iters": changes.get("iters"), "epochs": changes.get("epochs")}
        keep = {k: v for k, v in changes.items() if k in RESUMABLE and k not in length}
        return dataclasses.replace(self, **length, **keep)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["hidden"] is not None:
            d["hidden"] = list(d["hidden"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config a ``to_dict`` wrote; unknown keys are refused."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config has unknown fields {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("hidden"), list):
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


def _normalize(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    ok = _is_int(value) and value >= lo
    if not ok or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _optional_int(name: str, value: Any) -> None:
    if value is not None:
        _int(name, value, 1)


def _finite_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
