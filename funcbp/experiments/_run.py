"""One experiment's run folder: its settings, checked first; its outputs, written safely.

A run folder holds ``experiment.json`` (the settings, written before any work),
then, when the run ends, ``figure.png``, ``results.json`` (every number behind
the figure, and the claims) and ``claims.txt`` (one line per claim). Each file
is written to a temporary name and renamed. Models trained on the way live in
``train/`` as the engine's own run folders, checkpointed, so ``--resume DIR``
continues a stopped experiment where its training stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funcbp.config import MAX_SEED
from funcbp.data import SOURCES
from funcbp.io import atomic_write, atomic_write_text, check_writable
from funcbp.runs import dumps_json
from funcbp.stopping import Stop

__all__ = ["Claim", "Settings", "execute", "load_settings", "make_settings"]

SETTINGS_FILE = "experiment.json"
OUTPUTS = ("figure.png", "results.json", "claims.txt")


@dataclass(frozen=True)
class Claim:
    """One of the book's claims, whether it held on this run's data, and the numbers;
    ``held=None`` for a measurement that claims nothing (e.g. the speed against the book)."""

    claim: str
    held: bool | None
    numbers: str

    def line(self) -> str:
        verdict = {True: "held", False: "NOT held", None: "measured"}[self.held]
        return f"{verdict}: {self.claim} ({self.numbers})"


@dataclass(frozen=True)
class Settings:
    """What an experiment run is given. ``seeds`` is None where the experiment draws nothing."""

    name: str
    seeds: int | None = None
    seed: int = 0
    quick: bool = False
    data: str = "mnist-5k"
    params: str | None = None
    run_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if not ok or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def make_settings(experiment, *, seeds=None, seed=None, quick=False, data=None,
                  params=None, run_dir=None) -> Settings:  # fmt: skip
    """Checks every argument against the experiment's row, before any data or compile.

    Raises:
        ValueError: one line naming the argument, what was expected and what came.
    """
    name, brought = experiment.name, params is not None or run_dir is not None
    if brought and experiment.model is None:
        raise ValueError(
            f"--params and --run-dir apply to experiments on a trained model, not {name}"
        )
    if params is not None and run_dir is not None:
        raise ValueError("give --params FILE or --run-dir DIR, not both")
    if seeds is not None and (experiment.seeds is None or brought):
        why = "draws nothing at random" if experiment.seeds is None else "is given its model"
        raise ValueError(f"--seeds does not apply: {name} {why}")
    if not brought:
        seeds = experiment.seeds if seeds is None else _int("--seeds", seeds, 1)
    seed = _int("--seed", 0 if seed is None else seed, 0, MAX_SEED)
    if seeds is not None and seed + seeds - 1 > MAX_SEED:
        raise ValueError(f"--seed + --seeds - 1 must be at most {MAX_SEED}, got {seed + seeds - 1}")
    if params is not None and not Path(params).is_file():
        raise ValueError(f"--params must be an existing file, got {params!r}")
    if run_dir is not None and not Path(run_dir).is_dir():
        raise ValueError(f"--run-dir must be an existing folder, got {run_dir!r}")
    if data is not None and not experiment.data:
        raise ValueError(f"--data does not apply: {name} reads no MNIST")
    data = "mnist-5k" if data is None else data
    if not isinstance(data, str) or not (data in SOURCES or Path(data).is_dir()):
        choices = " or ".join(SOURCES)
        raise ValueError(f"--data must be {choices} or a folder of the IDX files, got {data!r}")
    settings = Settings(name, seeds, seed, bool(quick), data, params, run_dir)
    if brought:  # the file or folder must hold the model, before anything is made
        from funcbp.experiments._models import trained

        trained(settings, None, experiment.model, None)
    return settings


def load_settings(out: Path) -> Settings:
    """The settings a stopped run folder was started with; refuses anything else."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise ValueError(f"--resume {out}: no {SETTINGS_FILE} there (not an experiment folder)")
    try:
        given = json.loads(path.read_text())["settings"]
        return Settings(**given)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is damaged: {e}") from None


def _prepare(out: Path, settings: Settings, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder for the experiment")
    if not resume and out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} already holds files; choose a new folder, or continue a stopped "
            f"experiment with --resume {out}"
        )
    check_writable(out, "--out")
    record = {"settings": settings.to_dict()}
    atomic_write_text(out / SETTINGS_FILE, json.dumps(record, indent=2) + "\n")
    for name in OUTPUTS:  # a resumed run writes them anew
        (out / name).unlink(missing_ok=True)


def _write(out: Path, results: dict, claims: list[Claim], fig) -> None:
    atomic_write(out / "figure.png", lambda f: fig.savefig(f, format="png", dpi=100))
    record = {**results, "claims": [dataclasses.asdict(c) for c in claims]}
    atomic_write_text(out / "results.json", dumps_json(record))
    atomic_write_text(out / "claims.txt", "".join(c.line() + "\n" for c in claims))


@dataclass(frozen=True)
class Outcome:
    """What a finished experiment gives back: its folder, results and claims."""

    out: Path
    results: dict[str, Any]
    claims: list[Claim]


def execute(module, settings: Settings, out: Path, *, resume: bool = False,
            log: Callable[[str], None] = print, stop: Stop | None = None) -> Outcome:  # fmt: skip
    """Runs ``module.compute``, then writes its figure, results and claims into ``out``.

    ``stop`` (the command's, installed before JAX) goes to every ``fit``; its
    goodbye says to resume with ``funcbp experiment --resume OUT``. Without
    one, each ``fit`` handles the signals itself while it runs.
    """
    out = Path(out)
    if stop is not None:
        stop.resume_command = f"funcbp experiment --resume {out}"
    _prepare(out, settings, resume)
    load, t0 = os.getloadavg(), time.perf_counter()
    results = module.compute(settings, out, log, stop)
    results["settings"] = settings.to_dict()
    results["seconds"] = time.perf_counter() - t0
    results["load_average"] = {"before": list(load), "after": list(os.getloadavg())}
    claims = module.claims(results)
    _write(out, results, claims, module.figure(results))
    return Outcome(out, results, claims)
