"""What a run is: what the user gave (:class:`TrainConfig`) and what it resolves to (:class:`Run`).

A :class:`TrainConfig` holds exactly what was given; a field left as None
takes the model's recipe (:data:`funcbp.zoo.MODELS`, the book's own script
for that network) when the config is resolved. It is checked when it is made
and never changes, so ``dataclasses.replace`` on it is always safe: the new
optimizer's rate applies, another model takes its own options.

:func:`resolve` returns the :class:`Run`: every value the run uses, for a
training set of a given size. A run is K models in one program. They differ by
seed (``seeds``) and by the value hyperparameters of :data:`SWEEPABLE`, given
as a list (a grid: ``lr=(0.1, 0.01)``) or as a :class:`Range` drawn ``trials``
times from the run's seed (the book's random search). Model ``m`` has seed
``seed + m``; configurations come first, then seeds: model ``c * seeds + s``
is configuration ``c`` with its ``s``-th seed.

Each field's metadata holds its command-line help and the parser of its text
(``funcbp train`` makes its flags from them), and says whether ``--resume``
may change it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optax

from funcbp import _checks, zoo
from funcbp.net import GRADIENT_METHODS, Network, check_compute_dtype

__all__ = [
    "MAX_SEED",
    "MESH_AXES",
    "OPTIMIZERS",
    "RESUMABLE",
    "SWEEPABLE",
    "TRAIN_GRADIENTS",
    "Optimizer",
    "Range",
    "Run",
    "TrainConfig",
    "make_optimizer",
    "resolve",
]

MAX_SEED = 2**32 - 1  # jax.random.key takes a uint32 seed; larger ones wrap around silently
MESH_AXES = ("explicit", "auto")
# Numerical gradients are for checking: 2 forward passes per parameter per step.
TRAIN_GRADIENTS = tuple(m for m in GRADIENT_METHODS if m != "numerical")
INIT_NAMES = ("he", "xavier")


# --- optimizers -------------------------------------------------------------------


@dataclass(frozen=True)
class Optimizer:
    """One of the book's optimizers as optax builds it.

    Attributes:
        lr: the book's default rate (sgd's 0.1 is train_neuralnet.py's).
        make: ``make(learning_rate, **options) -> GradientTransformation``;
            optax's ``inject_hyperparams`` keeps every argument in the state,
            so each of K models has its own.
        options: its other hyperparameters, as config fields, with the book's values.
    """

    lr: float
    make: Callable[..., optax.GradientTransformation]
    options: Mapping[str, float] = dataclasses.field(default_factory=dict)


def _momentum(learning_rate, momentum):
    return optax.sgd(learning_rate, momentum=momentum)


def _nesterov(learning_rate, momentum):
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


def _adagrad(learning_rate):
    return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=1e-7)


def _rmsprop(learning_rate, decay_rate):
    return optax.rmsprop(learning_rate, decay=decay_rate, eps=1e-7, eps_in_sqrt=False)


def _adam(learning_rate, beta1, beta2):
    return optax.adam(learning_rate, b1=beta1, b2=beta2, eps=1e-7)


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(0.1, optax.sgd),
    "momentum": Optimizer(0.01, _momentum, {"momentum": 0.9}),
    "nesterov": Optimizer(0.01, _nesterov, {"momentum": 0.9}),
    "adagrad": Optimizer(0.01, _adagrad),
    "rmsprop": Optimizer(0.01, _rmsprop, {"decay_rate": 0.99}),
    "adam": Optimizer(0.001, _adam, {"beta1": 0.9, "beta2": 0.999}),
}
"""The book's optimizers (ch. 6) and defaults."""


_STATE_NAMES = {"lr": "learning_rate"}  # optax's names, where they are not the book's


def make_optimizer(name: str, lr: float | None = None, **options: float):
    """The optax optimizer ``name`` with its hyperparameters in its state.

    Unset values are the book's. The state's ``hyperparams`` hold
    ``learning_rate`` and the options (e.g. ``momentum``), one per model.
    """
    entry = OPTIMIZERS[_checks.one_of("optimizer", name, OPTIMIZERS)]
    values = {"learning_rate": entry.lr if lr is None else lr, **entry.options, **options}
    return optax.inject_hyperparams(entry.make)(**values)


# --- sweeps --------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A range to draw a value from, once per trial: ``log:LOW:HIGH`` or ``uniform:LOW:HIGH``.

    ``log`` draws ``10 ** uniform(log10(low), log10(high))``, as the book's
    random search draws its rates.
    """

    low: float
    high: float
    log: bool = True

    def __post_init__(self):
        # A log range needs a positive low end; the high end is at least the low one.
        _checks.finite("a range's low end", self.low, low=0.0, strict=self.log)
        _checks.finite("a range's high end", self.high, low=self.low, strict=False)

    def draw(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))
        return float(rng.uniform(self.low, self.high))

    def __str__(self) -> str:
        return f"{'log' if self.log else 'uniform'}:{self.low!r}:{self.high!r}"

    @classmethod
    def parse(cls, text: str) -> Range:
        kind, _, bounds = text.partition(":")
        low, _, high = bounds.partition(":")
        if kind not in ("log", "uniform") or not low or not high:
            raise ValueError(f"expected log:LOW:HIGH or uniform:LOW:HIGH, got {text!r}")
        return cls(_number(low), _number(high), log=kind == "log")


SWEEPABLE = (
    "lr",
    "momentum",
    "decay_rate",
    "beta1",
    "beta2",
    "weight_init_std",
    "weight_decay",
    "dropout",
)
"""The value hyperparameters: each may be one value, a list (a grid) or a Range (trials)."""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(h) for h in text.split(","))
    except ValueError:
        raise ValueError(f"expected widths like 50 or 100,100, got {text!r}") from None


def _parse_values(text: str, names: Sequence[str] = ()) -> Any:
    """One value, a list ``a,b,c`` (a grid) or a Range; ``names`` may stand for numbers."""
    if text.split(":", 1)[0] in ("log", "uniform"):
        return Range.parse(text)
    values = tuple(v if v in names else _number(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def _parse_init(text: str) -> Any:
    return _parse_values(text, INIT_NAMES)


def _meta(help: str, parse: Callable[[str], Any] | None = str, **meta) -> dict[str, Any]:
    """A field's metadata: its help, the parser of its text (None: a flag), ``resumable``."""
    return {"help": help, "parse": parse, **meta}


Sweep = float | tuple[float, ...] | Range | None
"""A value hyperparameter: one value, a list (a grid) or a range (trials)."""


# --- the config ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run was given. None takes the model's recipe; see :func:`resolve`.

    ``iters`` or ``epochs`` sets the length (not both); an epoch is the book's
    ``max(train_size / batch_size, 1)`` iterations.
    """

    model: str = field(default="two-layer", metadata=_meta("the network: " + ", ".join(zoo.MODELS)))
    data: str = field(
        default="mnist-5k",
        metadata=_meta(
            "mnist-5k (bundled), mnist (IDX files in $FUNCBP_DATA_DIR or the cache, downloaded "
            "if missing) or a folder holding the four IDX files"
        ),
    )
    data_size: int | None = field(
        default=None,
        metadata=_meta(
            "train on the first N training examples, as the book's x_train[:N]", _parse_int
        ),
    )
    validation: float | None = field(
        default=None,
        metadata=_meta(
            "split this fraction off the training set (shuffled by the seed, as the book's "
            "shuffle_dataset); models are ranked on it",
            _number,
        ),
    )
    iters: int | None = field(
        default=None, metadata=_meta("iterations (default: the recipe)", _parse_int, resumable=True)
    )
    epochs: float | None = field(
        default=None, metadata=_meta("epochs, instead of --iters", _number, resumable=True)
    )
    batch_size: int = field(
        default=100, metadata=_meta("rows per minibatch, over all devices", _parse_int)
    )
    optimizer: str | None = field(
        default=None, metadata=_meta("default: the recipe's; " + ", ".join(OPTIMIZERS))
    )
    lr: Sweep = field(
        default=None,
        metadata=_meta("learning rate: a number, a list (a grid) or log:LOW:HIGH", _parse_values),
    )
    momentum: Sweep = field(
        default=None, metadata=_meta("momentum and nesterov: default 0.9", _parse_values)
    )
    decay_rate: Sweep = field(default=None, metadata=_meta("rmsprop: default 0.99", _parse_values))
    beta1: Sweep = field(default=None, metadata=_meta("adam: default 0.9", _parse_values))
    beta2: Sweep = field(default=None, metadata=_meta("adam: default 0.999", _parse_values))
    hidden: tuple[int, ...] | None = field(
        default=None, metadata=_meta("MLPs: widths, e.g. 50 or 100,100", _parse_widths)
    )
    activation: str | None = field(
        default=None, metadata=_meta("multi-layer: relu (default) or sigmoid")
    )
    weight_init_std: float | str | tuple[float | str, ...] | Range | None = field(
        default=None, metadata=_meta("a number, he or xavier; or a list of them", _parse_init)
    )
    batch_norm: bool | None = field(
        default=None, metadata=_meta("multi-layer: batch norm after each Affine", None)
    )
    dropout: Sweep = field(
        default=None, metadata=_meta("multi-layer: the dropout ratio", _parse_values)
    )
    weight_decay: Sweep = field(
        default=None, metadata=_meta("multi-layer: L2 weight decay's lambda", _parse_values)
    )
    compute_dtype: str = field(
        default="float32",
        metadata=_meta(
            "the layers' dtype: bfloat16 computes in bfloat16 (float32 weights, updates and "
            "batch-norm statistics)"
        ),
    )
    grad: str = field(
        default="manual",
        metadata=_meta("manual, backprop or autodiff (jax.grad of the plain twins)"),
    )
    seed: int = field(default=0, metadata=_meta("the first model's seed", _parse_int))
    seeds: int = field(
        default=1, metadata=_meta("K models per configuration, the next K seeds", _parse_int)
    )
    trials: int | None = field(
        default=None, metadata=_meta("draw N configurations from the ranges (log:...)", _parse_int)
    )
    shared_batches: bool = field(
        default=False, metadata=_meta("every model sees the first model's minibatches", None)
    )
    eval_every: int | None = field(
        default=None,
        metadata=_meta(
            "iterations between evaluations (default: an epoch)", _parse_int, resumable=True
        ),
    )
    eval_samples: int | None = field(
        default=None,
        metadata=_meta(
            "examples per evaluation (default: the recipe's; the last takes all)", _parse_int
        ),
    )
    devices: int | None = field(
        default=None,
        metadata=_meta(
            "data-parallel over N devices (default: as many as divide the batch)",
            _parse_int,
            resumable=True,
        ),
    )
    mesh_axes: str = field(
        default="explicit", metadata=_meta("the mesh's axis type: explicit or auto", resumable=True)
    )

    def __post_init__(self):
        _check_run(self)
        _check_sweep(self)
        _check_values(self)

    @property
    def configurations(self) -> int:
        """How many configurations: the trials, or the grid's size."""
        if self.trials is not None:
            return self.trials
        return math.prod(len(v) for v in _grid_values(self).values())

    @property
    def models(self) -> int:
        """K: the configurations times the seeds."""
        return self.configurations * self.seeds

    def resumed(self, changes: Mapping[str, Any]) -> TrainConfig:
        """The config to continue this run with; only :data:`RESUMABLE` fields may change.

        A value given again that resolves to the run's own is no change.

        Raises:
            ValueError: naming the first field that would change what the run computes.
        """
        length = {"iters": self.iters, "epochs": self.epochs}
        if "iters" in changes or "epochs" in changes:  # one replaces the other
            length = {"iters": changes.get("iters"), "epochs": changes.get("epochs")}
        keep = {k: v for k, v in changes.items() if k in RESUMABLE and k not in length}
        resumed = dataclasses.replace(self, **length, **keep)
        for name, value in changes.items():
            if name in RESUMABLE or _normalize(value) == _normalize(getattr(self, name)):
                continue
            given = dataclasses.replace(resumed, **{name: value})
            if _computes(given) != _computes(resumed):
                raise ValueError(
                    f"{name} cannot change on resume (the run has {_show(_resolved(self, name))}"
                    f", got {_show(value)}); start a new run to change it"
                )
        return resumed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, ranges as their text."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any) -> TrainConfig:
        """The config a ``to_dict`` wrote; unknown keys are refused."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config has unknown fields {', '.join(unknown)}")
        return cls(**{k: _from_json(k, v) for k, v in d.items()})


RESUMABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resumable"))
"""What ``--resume`` honours: these change how a run is carried out, not what it computes."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Range):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_json(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if name in SWEEPABLE and isinstance(value, str) and ":" in value:
        return Range.parse(value)
    return value


# --- checks: each of the run's own settings, here; the model's options in the registry ---


def _check_run(c: TrainConfig) -> None:
    for name, value in {"model": c.model, "optimizer": c.optimizer}.items():
        if isinstance(value, str) and "," in value:
            raise ValueError(
                f"{name} does not vary within a run, got {value!r}: the models of one program "
                "share the model, its sizes, batch norm and the optimizer's kind; "
                "start a run for each"
            )
    spec = zoo.spec(c.model)
    if not isinstance(c.data, str) or not c.data:
        raise ValueError(f"data must be a dataset name or a folder, got {c.data!r}")
    if c.iters is not None and c.epochs is not None:
        raise ValueError(
            f"iters and epochs both set the length; give one, got {c.iters} and {c.epochs}"
        )
    for name in ("iters", "data_size", "eval_every", "eval_samples", "devices", "trials"):
        if getattr(c, name) is not None:
            _checks.integer(name, getattr(c, name))
    if c.epochs is not None:
        _checks.finite("epochs", c.epochs)
    if c.validation is not None:
        _checks.finite("validation", c.validation)
        if c.validation >= 1:
            raise ValueError(f"validation must be a fraction in (0, 1), got {c.validation!r}")
    _checks.integer("batch_size", c.batch_size)
    _checks.integer("seeds", c.seeds)
    _checks.integer("seed", c.seed, 0, MAX_SEED)
    _checks.one_of("mesh_axes", c.mesh_axes, MESH_AXES)
    _checks.boolean("shared_batches", c.shared_batches)
    if c.grad not in TRAIN_GRADIENTS:
        raise ValueError(
            f"grad must be one of {', '.join(TRAIN_GRADIENTS)} (numerical is for checking), "
            f"got {c.grad!r}"
        )
    check_compute_dtype(c.compute_dtype)  # the network's rule: float16 needs loss scaling
    _checks.one_of("optimizer", c.optimizer or spec.recipe.optimizer, OPTIMIZERS)


def _check_sweep(c: TrainConfig) -> None:
    grid = {n: v for n in SWEEPABLE if isinstance(v := getattr(c, n), tuple)}
    ranges = [n for n in SWEEPABLE if isinstance(getattr(c, n), Range)]
    for name, values in grid.items():
        if not values:
            raise ValueError(f"{name} must hold at least one value, got ()")
    if c.trials is not None and grid:
        raise ValueError(
            f"trials draws each value from a range, and {', '.join(grid)} is a list (a grid); "
            "give log:LOW:HIGH ranges with trials, or lists without"
        )
    if ranges and c.trials is None:
        raise ValueError(
            f"{', '.join(ranges)} is a range (log:LOW:HIGH); trials says how many "
            "configurations to draw from it"
        )
    if c.trials is not None and not ranges:
        raise ValueError("trials needs a range to draw from, e.g. lr log:1e-6:1e-2")
    if c.shared_batches and c.models == 1:
        raise ValueError("shared_batches needs several models (seeds > 1, or a sweep)")
    if c.seed + c.models - 1 > MAX_SEED:
        raise ValueError(
            f"seed + models - 1 must be at most {MAX_SEED} (seeds are uint32), "
            f"got {c.seed} + {c.models} - 1"
        )


def _check_values(c: TrainConfig) -> None:
    """Each model's values: the optimizer's here; the model's options by the registry."""
    name = _optimizer(c)
    optimizer = OPTIMIZERS[name]
    for option in ("momentum", "decay_rate", "beta1", "beta2"):
        if getattr(c, option) is not None and option not in optimizer.options:
            owners = [o for o, entry in OPTIMIZERS.items() if option in entry.options]
            raise ValueError(f"{option} applies to optimizer {' and '.join(owners)}, not {name}")
    for values in _configurations(c):
        _checks.finite("lr", values["lr"])
        for name in optimizer.options:
            _checks.ratio(name, values[name])
    _networks(c)  # the registry refuses options that do not apply and bad values


# --- resolution ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A config resolved for a training set of ``train_size`` rows: every value the run uses.

    Attributes:
        config: what was given.
        train_size: the training rows (after ``data_size`` and ``validation``).
        iters: the run's length in iterations.
        eval_every: iterations between evaluations.
        eval_samples: examples per evaluation, or None for all.
        optimizer: the optimizer's name.
        architecture: the model's options, shared by every model (``hidden``, ...).
        models: each model's seed and value hyperparameters (``lr``, ...).
    """

    config: TrainConfig
    train_size: int
    iters: int
    eval_every: int
    eval_samples: int | None
    optimizer: str
    architecture: Mapping[str, Any]
    models: tuple[Mapping[str, Any], ...]

    @property
    def count(self) -> int:
        """K, the models trained at once."""
        return len(self.models)

    @property
    def iter_per_epoch(self) -> float:
        """The book's ``max(train_size / batch_size, 1)``."""
        return _iter_per_epoch(self.config, self.train_size)

    @property
    def varying(self) -> tuple[str, ...]:
        """The values that differ between the models (``seed`` among them when K > 1)."""
        names = self.models[0].keys()
        return tuple(n for n in names if len({_key(m[n]) for m in self.models}) > 1)

    def network(self, model: int = 0) -> Network:
        """Model ``model``'s network, its values as Python numbers."""
        return self.build({k: v for k, v in self.models[model].items() if k in MODEL_OPTIONS})

    def build(self, values: Mapping[str, Any]) -> Network:
        """The network with ``values`` for some of the model's options (the first model's
        for the rest); under a trace, :meth:`loss_values` may be traced scalars."""
        first = {k: v for k, v in self.models[0].items() if k in MODEL_OPTIONS}
        return zoo.build(self.config.model, {**self.architecture, **first, **values})

    def optimizer_values(self) -> dict[str, list[float]]:
        """Each model's optimizer values, by their names in the state of
        :func:`make_optimizer`'s optimizer (``learning_rate``, ``momentum``, ...)."""
        names = ("lr", *OPTIMIZERS[self.optimizer].options)
        return {_STATE_NAMES.get(n, n): [m[n] for m in self.models] for n in names}

    def loss_values(self) -> dict[str, np.ndarray]:
        """The values of the loss that differ between the models, (K,) each: the step
        traces them into each model's network (:meth:`build`)."""
        names = [n for n in self.varying if n in LOSS_VALUES]
        return {n: np.asarray([m[n] for m in self.models], np.float32) for n in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "optimizer": self.optimizer,
            "iters": self.iters,
            "epochs": self.iters / self.iter_per_epoch,
            "eval_every": self.eval_every,
            "eval_samples": self.eval_samples,
            "train_size": self.train_size,
            "architecture": {k: _jsonable(v) for k, v in self.architecture.items()},
            "varying": list(self.varying),
            "models": [dict(m) for m in self.models],
        }


def resolve(config: TrainConfig, train_size: int) -> Run:
    """Every value of ``config``'s run, for a training set of ``train_size`` rows.

    Pure: ``config`` is not changed, and the same config always resolves alike.
    """
    train_size = _checks.integer("train_size", train_size)
    spec = zoo.spec(config.model)
    per_epoch = _iter_per_epoch(config, train_size)
    if config.iters is not None:
        iters = config.iters
    elif config.epochs is not None or spec.recipe.epochs is not None:
        iters = math.ceil((config.epochs or spec.recipe.epochs) * per_epoch)
    else:
        iters = spec.recipe.iters
    return Run(
        config=config,
        train_size=train_size,
        iters=iters,
        eval_every=config.eval_every or max(round(per_epoch), 1),
        eval_samples=config.eval_samples or spec.recipe.eval_samples,
        optimizer=_optimizer(config),
        architecture=_architecture(config),
        models=_model_values(config),
    )


def _optimizer(c: TrainConfig) -> str:
    return c.optimizer or zoo.spec(c.model).recipe.optimizer


def _iter_per_epoch(config: TrainConfig, train_size: int) -> float:
    return max(train_size / config.batch_size, 1)


def _architecture(c: TrainConfig) -> dict[str, Any]:
    """The model's options that are not value hyperparameters, the recipe's where not given."""
    spec = zoo.spec(c.model)
    given = {"hidden": c.hidden, "activation": c.activation, "batch_norm": c.batch_norm}
    options = {k: v for k, v in spec.options.items() if k not in SWEEPABLE}
    return {k: given[k] if given[k] is not None else v for k, v in options.items()}


def _model_values(c: TrainConfig) -> tuple[dict[str, Any], ...]:
    """Each model's seed and values: configurations first, then seeds."""
    networks = _networks(c)
    models = []
    for values, net in zip(_configurations(c), networks, strict=True):
        values = {**values, "weight_init_std": net.weight_init_std}  # the builder's default
        for _ in range(c.seeds):
            models.append({"seed": c.seed + len(models), **values})
    return tuple(models)


def _networks(c: TrainConfig) -> list[Network]:
    """Each configuration's network, built (and so checked) by the registry."""
    given = {n: getattr(c, n) for n in MODEL_OPTIONS if getattr(c, n) is not None}
    nets = []
    for values in _configurations(c):
        options = {k: v for k, v in {**given, **values}.items() if k in MODEL_OPTIONS}
        nets.append(zoo.build(c.model, options))
    return nets


LOSS_VALUES = ("weight_decay", "dropout")
"""The value hyperparameters the loss reads; the others live in the optimizer or the init."""

MODEL_OPTIONS = ("hidden", "activation", "batch_norm", "weight_init_std", "weight_decay", "dropout")
"""The config fields that are the model's options (the registry says which apply)."""


def _grid_values(c: TrainConfig) -> dict[str, tuple]:
    values = {n: getattr(c, n) for n in SWEEPABLE if getattr(c, n) is not None}
    return {n: v if isinstance(v, tuple) else (v,) for n, v in values.items()}


def _configurations(c: TrainConfig) -> list[dict[str, Any]]:
    """The values of each configuration: the grid's product, or ``trials`` draws.

    Unset values are the recipe's or the book's; options that do not apply stay out.
    """
    defaults = _default_values(c)
    if c.trials is None:
        grid = _grid_values(c)
        combos = itertools.product(*grid.values())
        return [{**defaults, **dict(zip(grid, combo, strict=True))} for combo in combos]
    rng = np.random.default_rng([c.seed, 0])  # the split shuffles with [seed, 1]
    drawn = []
    for _ in range(c.trials):
        values = {n: getattr(c, n) for n in SWEEPABLE if getattr(c, n) is not None}
        drawn.append({**defaults, **{n: _draw(v, rng) for n, v in values.items()}})
    return drawn


def _draw(value: Any, rng: np.random.Generator) -> Any:
    return value.draw(rng) if isinstance(value, Range) else value


def _default_values(c: TrainConfig) -> dict[str, Any]:
    """The values a model has when none are given: the recipe's rate, the book's options."""
    spec = zoo.spec(c.model)
    name = c.optimizer or spec.recipe.optimizer
    optimizer = OPTIMIZERS[name]
    lr = spec.recipe.lr if name == spec.recipe.optimizer else optimizer.lr
    model = {k: v for k, v in spec.options.items() if k in SWEEPABLE}
    return {"lr": lr, **optimizer.options, **model}


# --- resume's comparisons --------------------------------------------------------------


def _computes(c: TrainConfig) -> tuple:
    """What determines the run's numbers, besides its length and devices: resolved values."""
    skip = {*RESUMABLE, *SWEEPABLE, *MODEL_OPTIONS, *_run_values(c)}
    fields = sorted(
        (f.name, getattr(c, f.name)) for f in dataclasses.fields(c) if f.name not in skip
    )
    return repr(fields), repr(_run_values(c)), repr(_architecture(c)), repr(_model_values(c))


def _run_values(c: TrainConfig) -> dict[str, Any]:
    return {
        "optimizer": _optimizer(c),
        "eval_samples": c.eval_samples or zoo.spec(c.model).recipe.eval_samples,
    }


def _resolved(c: TrainConfig, name: str) -> Any:
    """The run's value of ``name``: the config's, or what it resolved to."""
    resolved = {**_run_values(c), **_architecture(c)}
    if name in resolved:
        return resolved[name]
    models = _model_values(c)
    if name in models[0]:
        values = tuple(dict.fromkeys(m[name] for m in models))
        return values[0] if len(values) == 1 else values
    return getattr(c, name)


def _key(value: Any) -> Any:
    return repr(value)


def _normalize(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_normalize(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
