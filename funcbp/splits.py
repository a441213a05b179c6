"""A run's data: the training set as the run cuts it, its validation split, the test set.

``data_size`` keeps the first N training examples (the book's ``x_train[:N]``);
``validation`` then shuffles them with the run's seed and splits that fraction
off the front, as the book's ``shuffle_dataset`` and hyperparameter search do.
The test set is never touched: models are ranked on the validation set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from funcbp.config import TrainConfig
from funcbp.data import load_for_model

__all__ = ["Data", "load_training_data", "shuffle_dataset"]


@dataclass(frozen=True)
class Data:
    """The sets as NumPy arrays, x shaped for the network: (n, *input_shape); no val: None."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray | None
    t_val: np.ndarray | None
    x_test: np.ndarray
    t_test: np.ndarray

    @property
    def held_out(self) -> str:
        """The set models are compared on: ``val`` with a validation split, else ``test``."""
        return "test" if self.x_val is None else "val"

    def sets(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": ..., "val": ..., "test": ...}``, ``val`` only when there is one."""
        sets = {"train": (self.x_train, self.t_train)}
        if self.x_val is not None:
            sets["val"] = (self.x_val, self.t_val)
        return {**sets, "test": (self.x_test, self.t_test)}

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes + t.nbytes for x, t in self.sets().values())

    def digests(self) -> dict[str, str]:
        """Each set's sha256, over its arrays as loaded: dtype, shape and bytes of x, then t.

        A run keeps them, and a resume on other data is refused.
        """
        digests = {}
        for name, arrays in self.sets().items():
            h = hashlib.sha256()
            for a in arrays:
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype.str}{a.shape};".encode())
                h.update(memoryview(a).cast("B"))
            digests[name] = h.hexdigest()
        return digests


def shuffle_dataset(x: np.ndarray, t: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The book's ``shuffle_dataset``: the rows in a random order, drawn from ``seed``."""
    order = np.random.default_rng([seed, 1]).permutation(len(x))
    return x[order], t[order]


def load_training_data(config: TrainConfig, input_shape: Sequence[int]) -> Data:
    """``config.data`` cut as the run says, checked against the batch size.

    Raises:
        ValueError: ``data_size`` beyond the training set, a validation split
            that leaves no example on a side, or a batch larger than the training set.
    """
    (x, t), (x_test, t_test) = load_for_model(config.data, input_shape)
    if config.data_size is not None:
        if config.data_size > len(x):
            raise ValueError(
                f"data_size must be at most the training set's size {len(x)}, "
                f"got {config.data_size}"
            )
        x, t = x[: config.data_size], t[: config.data_size]
    x_val = t_val = None
    if config.validation is not None:
        n_val = int(len(x) * config.validation)  # the book's int(x_train.shape[0] * rate)
        if not 0 < n_val < len(x):
            raise ValueError(
                f"validation {config.validation} of {len(x)} examples leaves {n_val} for "
                f"validation and {len(x) - n_val} for training; each needs at least one"
            )
        x, t = shuffle_dataset(x, t, config.seed)
        x_val, t_val, x, t = x[:n_val], t[:n_val], x[n_val:], t[n_val:]
    if config.batch_size > len(x):
        raise ValueError(
            f"batch_size must be at most the training set's size {len(x)}, got {config.batch_size}"
        )
    return Data(x, t, x_val, t_val, x_test, t_test)
