"""Gradient checking: is a hand-written backward rule right, and how sure are we?

:func:`compare_gradients` checks a function built from ``custom_vjp`` rules in
seven comparisons, each with its own verdict per argument, its numbers and its
tolerance:

- ``vs_autodiff``: the rule's VJP of a random cotangent against ``jax.grad`` of
  the plain-jnp twin. The exact test: a correct rule differs by rounding only.
- ``vs_numerical``: against central differences, taken in float64 (the inputs
  cast up) when the rule runs in float32 or lower. A sanity test with its own
  noise model: Richardson's truncation estimate plus the rounding of both sides.
  Entries whose differences straddle a kink are reported as ``"kink"``.
- ``vmap``: the rule batched with ``jax.vmap`` against the rule per example.
- ``jit``: the jitted rule against the eager one.
- ``cotangents``: each cotangent has its primal's shape and dtype.
- ``linearity``: ``bwd(3 dout + dout') = 3 bwd(dout) + bwd(dout')``.
- ``second_order``: grad of grad through the rule against the twin's.

``docs/checking.md`` shows the whole path and the noise model. These are tools
only; they know nothing of the layers. The table of what funcbp checks lives in
:mod:`funcbp.checks`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

__all__ = [
    "COMPARISONS",
    "ArgumentCheck",
    "Comparison",
    "GradientCheck",
    "compare_gradients",
    "format_report",
    "numerical_gradient",
]

COMPARISONS = (
    "vs_autodiff",
    "vs_numerical",
    "vmap",
    "jit",
    "cotangents",
    "linearity",
    "second_order",
)
# mode="auto" checks entry by entry up to this many differentiated entries, then directionally.
FULL_MODE_MAX = 1024
DIRECTIONS = 4
# Rule against twin (or rule against itself): |a - b| <= rtol * (|b| + scale), rtol = c * eps,
# scale = the largest |b| of the check. 16-bit rules are compared with a float32 twin, so
# their error is about their own last roundings; wider rules pile up more of them.
ROUNDING = {2: 4, 4: 64, 8: 64}  # c, by the dtype's itemsize
# The jit check runs the VJP eagerly too when it has at most this many operations.
EAGER_MAX_OPS = 16
# Central differences: the default step h by the dtype they are taken in, the second
# (coarse) stencil's step COARSE * h, and the margin over the estimated error.
STEP = {"float64": 1e-5, "float32": 1e-2}
COARSE = 10
SAFETY = 4
# An entry sits at a kink when its one-sided slopes at h differ by more than KINK times
# what the curvature seen by the coarse stencil explains (a kink's jump does not shrink
# with h, a smooth function's does).
KINK = 3
_STATUSES = ("ok", "kink", "skipped", "failed")
# The checks' programs run once or twice, so compiling is most of their cost: unoptimized,
# and on CPU without the fusion emitters, they compile 3-4x faster.
_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_CPU_COMPILE_OPTIONS = {
    **_COMPILE_OPTIONS,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}


def numerical_gradient(f: Callable[[Any], Array], x: Any, h: float = 1e-4) -> Any:
    """Central differences ``(f(x + h) - f(x - h)) / 2h``, one element at a time.

    Pure and jittable; perturbations are evaluated in vmapped batches.

    Args:
        f: scalar-valued function of ``x``.
        x: a float array or a pytree of float arrays (e.g. a params dict).
        h: the step, as in the book.

    Returns:
        The gradient, with x's structure, shapes and dtypes.
    """
    leaves = jax.tree_util.tree_leaves(x)
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"x must hold floating-point arrays, got dtype {jnp.result_type(leaf)}")
    # One flat vector, so a whole params dict is one vmapped loop, compiled once.
    flat, unravel = ravel_pytree(x)
    step = jnp.asarray(h, flat.dtype)

    def partial(i):
        e = jnp.zeros_like(flat).at[i].set(step)
        return (f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * step)

    grads = jax.lax.map(partial, jnp.arange(flat.size), batch_size=min(flat.size, 256))
    return unravel(grads.astype(flat.dtype))


# --- reports ----------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One comparison of one argument.

    ``status`` is ``"ok"``, ``"failed"``, ``"kink"`` (finite differences straddle a
    kink, so they cannot judge; not a failure) or ``"skipped"`` (with the reason in
    ``note``). ``max_abs`` is ``max |rule - other|``, ``max_rel`` is
    ``max |rule - other| / (|other| + atol)`` and ``share`` the largest share of
    the tolerance used (at most 1 passes). ``tolerance`` holds the bound's terms.
    """

    status: str
    max_abs: float = math.nan
    max_rel: float = math.nan
    share: float = math.nan
    tolerance: Mapping[str, Any] = field(default_factory=dict)
    entries: int = 0
    kinks: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        """True unless failed: a kink or a skipped comparison is not a failure."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        out = {"status": self.status, "ok": self.ok}
        for key in ("max_abs", "max_rel", "share"):
            value = getattr(self, key)
            out[key] = None if math.isnan(value) else value
        out.update(tolerance=dict(self.tolerance), entries=self.entries, kinks=self.kinks)
        if self.note:
            out["note"] = self.note
        return out


def _skipped(note: str) -> Comparison:
    return Comparison("skipped", note=note)


def _failed(note: str) -> Comparison:
    return Comparison("failed", note=note)


def _worst(comparisons: Sequence[Comparison]) -> Comparison:
    """The summary of one comparison over all arguments: the worst status, the largest numbers."""
    if not comparisons:
        return _skipped("no arguments")
    worst = max(comparisons, key=lambda c: (_STATUSES.index(c.status), _nan_low(c.share)))

    def top(key):
        values = [getattr(c, key) for c in comparisons if not math.isnan(getattr(c, key))]
        return max(values) if values else math.nan

    return Comparison(
        worst.status,
        top("max_abs"),
        top("max_rel"),
        top("share"),
        worst.tolerance,
        sum(c.entries for c in comparisons),
        sum(c.kinks for c in comparisons),
        worst.note,
    )


def _nan_low(x: float) -> float:
    return -math.inf if math.isnan(x) else x


@dataclass(frozen=True)
class ArgumentCheck:
    """The checks of one argument (or one parameter, e.g. ``W1``): one :class:`Comparison` each."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    comparisons: Mapping[str, Comparison]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

    @property
    def failed(self) -> list[str]:
        """The comparisons that failed, in :data:`COMPARISONS` order."""
        return [k for k, c in self.comparisons.items() if not c.ok]

    def __getitem__(self, comparison: str) -> Comparison:
        return self.comparisons[comparison]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "ok": self.ok,
            "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()},
        }


@dataclass(frozen=True)
class GradientCheck:
    """The check of one function: per-argument comparisons, the settings, skipped outputs."""

    name: str
    dtype: str
    arguments: tuple[ArgumentCheck, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    skipped_outputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.arguments)

    @property
    def failed(self) -> list[str]:
        """The comparisons that failed for some argument, in :data:`COMPARISONS` order."""
        bad = {k for a in self.arguments for k in a.failed}
        return [k for k in COMPARISONS if k in bad]

    def __getitem__(self, comparison: str) -> Comparison:
        """One comparison summarized over the arguments (the worst status, the largest numbers)."""
        return _worst([a.comparisons[comparison] for a in self.arguments])

    def argument(self, name: str) -> ArgumentCheck:
        for a in self.arguments:
            if a.name == name:
                return a
        raise KeyError(
            f"no argument {name!r}; the arguments are {[a.name for a in self.arguments]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "failed": self.failed,
            "dtype": self.dtype,
            "settings": dict(self.settings),
            "comparisons": {k: self[k].to_dict() for k in COMPARISONS},
            "arguments": [a.to_dict() for a in self.arguments],
            "skipped_outputs": dict(self.skipped_outputs),
        }


# --- text -------------------------------------------------------------------

_COLUMNS = {
    "vmap": "vmap",
    "jit": "jit",
    "cotangents": "cotangents",
    "linearity": "linearity",
    "second_order": "2nd order",
}
_CELL = {"ok": "ok", "failed": "NO", "kink": "kink", "skipped": "-"}


def _cell(c: Comparison) -> str:
    return "ok*" if c.status == "ok" and c.tolerance.get("eager") is False else _CELL[c.status]


def _numbers(c: Comparison) -> tuple[str, str]:
    if c.status in ("skipped", "kink") and math.isnan(c.max_abs):
        return ("at a kink" if c.status == "kink" else "-"), ""
    if math.isnan(c.max_abs):
        return "error", ""
    flag = {"kink": "k", "failed": "!"}.get(c.status, "")
    return f"{c.max_abs:.2e}{flag}", f"{c.max_rel:.2e}"


def format_report(results: Sequence[GradientCheck], title: str = "funcbp gradcheck") -> str:
    """The text table: a row per argument, a column per comparison, then what failed and why.

    The numbers are ``max |rule - other|`` and its relative size, for the twin and
    for finite differences (``!`` marks a failure, ``k`` an entry at a kink); the
    other columns say ok, NO, kink or - (skipped).
    """
    width = max(22, *(len(r.name) for r in results)) if results else 22
    arg_width = max(10, *(len(a.name) for r in results for a in r.arguments)) if results else 10
    header = (
        f"{'check':<{width}} {'argument':<{arg_width}} {'vs autodiff':>11} {'max rel':>9}  "
        f"{'vs numerical':>12} {'max rel':>9}  "
        + " ".join(f"{c:>{max(len(c), 4)}}" for c in _COLUMNS.values())
        + "  ok"
    )
    dtypes = sorted({r.dtype for r in results})
    lines = [f"{title} ({', '.join(dtypes)}): max |rule - other|, per argument", header]
    for r in results:
        for a in r.arguments:
            ad, num = _numbers(a["vs_autodiff"]), _numbers(a["vs_numerical"])
            cells = " ".join(f"{_cell(a[k]):>{max(len(c), 4)}}" for k, c in _COLUMNS.items())
            lines.append(
                f"{r.name:<{width}} {a.name:<{arg_width}} {ad[0]:>11} {ad[1]:>9}  "
                f"{num[0]:>12} {num[1]:>9}  {cells}  {'yes' if a.ok else 'NO'}"
            )
    lines += [line for r in results for line in _notes(r)]
    if any(_cell(a["jit"]) == "ok*" for r in results for a in r.arguments):
        lines.append(
            f"  ok* under jit: traced and run jitted; eagerly, each of a VJP's "
            f"operations compiles on its own, so it is compared with an eager run "
            f"only up to {EAGER_MAX_OPS} operations (jit='eager' compares any)"
        )
    failed = [r.name for r in results if not r.ok]
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)


def _notes(r: GradientCheck) -> list[str]:
    """A line per failed or kinked comparison of an argument; skipped ones, switched-off
    ones and skipped outputs once per check."""
    lines, skipped, off = [], {}, []
    for a in r.arguments:
        for k, c in a.comparisons.items():
            if c.status == "skipped" and c.note.endswith("is switched off"):
                off += [k] if k not in off else []
            elif c.status == "skipped":
                seen = skipped.setdefault(c.note, ([], []))
                seen[0].extend(x for x in [k] if x not in seen[0])
                seen[1].extend(x for x in [a.name] if x not in seen[1])
            elif c.status == "failed":
                detail = c.note
                if not math.isnan(c.share):
                    detail = f"{c.share:.3g} times the tolerance ({_tolerance_text(c)})" + (
                        f"; {c.note}" if c.note else ""
                    )
                lines.append(f"  {r.name} {a.name}: {k} FAILED: {detail}")
            elif c.status == "kink":
                lines.append(f"  {r.name} {a.name}: {k} at a kink: {c.note}")
    for note, (ks, args) in skipped.items():
        lines.append(f"  {r.name} {', '.join(args)}: {', '.join(ks)} skipped: {note}")
    if off:
        lines.append(f"  {r.name}: switched off: {', '.join(off)}")
    for path, why in r.skipped_outputs.items():
        lines.append(f"  {r.name}: output {path} not checked: {why}")
    return lines


def _tolerance_text(c: Comparison) -> str:
    return ", ".join(f"{k} {v:.2g}" for k, v in c.tolerance.items() if isinstance(v, float))


# --- what is checked, and how -----------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _floating(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def _argument_names(f: Callable, count: int) -> list[str]:
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


@dataclass(frozen=True)
class _Call:
    """The arguments: ``diff`` positions are differentiated, ``rest`` positions are traced
    arrays that are not (labels, keys, running statistics), all others are static Python
    values (strides, flags) closed over, as ``custom_vjp``'s ``nondiff_argnums`` need."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    diff: tuple[int, ...]
    rest: tuple[int, ...]

    @property
    def diff_values(self) -> tuple[Any, ...]:
        return tuple(self.args[i] for i in self.diff)

    @property
    def rest_values(self) -> tuple[Any, ...]:
        return tuple(self.args[i] for i in self.rest)

    def bind(self, fn: Callable) -> Callable[[tuple, tuple], Any]:
        """``fn`` as a function of (differentiated values, other traced values)."""

        def call(diff, rest):
            full = list(self.args)
            for i, v in zip(self.diff + self.rest, (*diff, *rest), strict=True):
                full[i] = v
            return fn(*full, **self.kwargs)

        return call


def _call(args, argnums, nondiff_argnums, kwargs) -> _Call:
    args = tuple(args)
    static = {i for i, a in enumerate(args) if not any(map(_is_array, jax.tree.leaves(a)))}
    for i in nondiff_argnums:
        if not (isinstance(i, int) and 0 <= i < len(args)):
            raise ValueError(f"nondiff_argnums must name arguments 0..{len(args) - 1}, got {i}")
    static |= set(nondiff_argnums)
    if argnums is None:
        argnums = tuple(
            i
            for i, a in enumerate(args)
            if i not in static and jax.tree.leaves(a) and all(map(_floating, jax.tree.leaves(a)))
        )
        if not argnums:
            raise ValueError(
                "args must contain at least one floating-point array argument to check"
            )
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in argnums:
        if not (isinstance(i, int) and 0 <= i < len(args)) or i in nondiff_argnums:
            raise ValueError(
                f"argnums must name arguments 0..{len(args) - 1} not in nondiff_argnums, got {i}"
            )
        leaves = jax.tree.leaves(args[i])
        if not leaves or not all(map(_floating, leaves)):
            dtypes = sorted({str(jnp.result_type(x)) for x in leaves}) or ["no arrays"]
            raise ValueError(
                f"argnums must name floating-point arguments, got {i} ({', '.join(dtypes)})"
            )
    static -= set(argnums)
    as_arrays = [a if i in static else jax.tree.map(jnp.asarray, a) for i, a in enumerate(args)]
    rest = tuple(i for i in range(len(args)) if i not in static and i not in argnums)
    return _Call(tuple(as_arrays), dict(kwargs or {}), tuple(argnums), rest)


def _cast(tree: Any, dtype: str) -> Any:
    """Floating leaves narrower than ``dtype`` cast up to it; the rest unchanged."""
    wide = jnp.dtype(dtype)

    def up(x):
        if _floating(x) and jnp.dtype(jnp.result_type(x)).itemsize < wide.itemsize:
            return jnp.asarray(x).astype(wide)
        return x

    return jax.tree.map(up, tree)


@dataclass(frozen=True)
class _Policy:
    """Which dtype each side runs in: the rule's, the twin's and the finite differences'."""

    rule: str
    twin: str
    numerical: str
    note: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "twin": self.twin,
            "numerical": self.numerical,
            "note": self.note,
        }


def _policy(call: _Call, manual: Callable) -> _Policy:
    leaves = jax.tree.leaves(call.diff_values)
    rule = max((jnp.dtype(x.dtype) for x in leaves), key=lambda d: d.itemsize).name
    twin = "float32" if jnp.dtype(rule).itemsize < 4 else rule
    if not jax.config.jax_enable_x64:
        wide = "float32" if jnp.dtype(rule).itemsize <= 4 else rule
        return _Policy(
            rule,
            twin,
            wide,
            f"finite differences in {wide}: float64 needs jax_enable_x64, which is off",
        )
    if rule == "float64":
        return _Policy(rule, twin, "float64", "")
    fn = call.bind(manual)
    try:
        jax.eval_shape(
            lambda d, r: fn(_cast(d, "float64"), _cast(r, "float64")),
            call.diff_values,
            call.rest_values,
        )
    except Exception as e:  # a function that refuses float64: difference in its own dtype
        wide = "float32" if jnp.dtype(rule).itemsize <= 4 else rule
        return _Policy(
            rule,
            twin,
            wide,
            f"finite differences in {wide}: the function "
            f"refused float64 inputs ({type(e).__name__}: "
            f"{_first_line(e)})",
        )
    return _Policy(
        rule, twin, "float64", f"finite differences in float64, the inputs cast up from {rule}"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _rtol(dtype: str) -> float:
    d = jnp.dtype(dtype)
    return ROUNDING[d.itemsize] * float(jnp.finfo(d).eps)


def _leaf_names(call: _Call, names: Sequence[str]) -> list[str]:
    """``W1`` for a params dict's leaf, ``x`` for an array argument, ``weights[0]`` otherwise."""
    out = []
    for i in call.diff:
        for path, _ in jax.tree_util.tree_flatten_with_path(call.args[i])[0]:
            if path and all(isinstance(p, jax.tree_util.DictKey) for p in path):
                out.append(jax.tree_util.keystr(path, simple=True, separator="."))
            else:
                out.append(names[i] + jax.tree_util.keystr(path))
    return out


@dataclass(frozen=True)
class _Outputs:
    """The output's leaves: which get a random cotangent, and why the others do not."""

    tree: Any  # of ShapeDtypeStruct
    checked: tuple[bool, ...]
    skipped: Mapping[str, str]

    def kept(self, tree: Any) -> list[Any]:
        """The checked leaves of an output-shaped ``tree``."""
        leaves = jax.tree.leaves(tree)
        return [x for x, keep in zip(leaves, self.checked, strict=True) if keep]

    def cotangent(self, rng: np.random.Generator) -> Any:
        """Eighths in [-4, 4] on the checked leaves (exact in any float dtype, and so is
        ``3 * v + v'``); zeros on the others (float0 for integer outputs)."""
        leaves, treedef = jax.tree.flatten(self.tree)
        cts = []
        for leaf, checked in zip(leaves, self.checked, strict=True):
            if not _floating(leaf.dtype):
                cts.append(np.zeros(leaf.shape, jax.dtypes.float0))
            elif checked:
                v = np.clip(np.round(8 * rng.standard_normal(leaf.shape)) / 8, -4, 4)
                cts.append(v.astype(leaf.dtype))
            else:
                cts.append(np.zeros(leaf.shape, leaf.dtype))
        return jax.tree.unflatten(treedef, cts)


def _outputs(call, manual, reference, state_outputs, seed) -> _Outputs:
    tree = jax.eval_shape(call.bind(manual), call.diff_values, call.rest_values)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    paths = [jax.tree_util.keystr(p) or "output" for p, _ in flat]
    skipped = {}
    for path, (_, leaf) in zip(paths, flat, strict=True):
        if not _floating(leaf.dtype):
            skipped[path] = f"integer output ({leaf.dtype}) has no gradient"
    floating = [p for p in paths if p not in skipped]
    if state_outputs is not None:
        for path in state_outputs:
            if path not in floating:
                raise ValueError(
                    f"state_outputs must name floating output leaves among {floating}, got {path!r}"
                )
            skipped[path] = "declared state (state_outputs)"
    elif len(floating) > 1 and reference is not None:
        for path in _no_gradient_in_twin(call, reference, tree, paths, floating, seed):
            skipped[path] = "state: the twin passes no gradient through it (stop_gradient)"
    if len(skipped) == len(paths):
        raise ValueError(f"the function's output has no floating leaf to check: {skipped}")
    return _Outputs(tree, tuple(p not in skipped for p in paths), skipped)


def _no_gradient_in_twin(call, reference, tree, paths, floating, seed) -> list[str]:
    """The floating output leaves whose random cotangent gives the twin a zero gradient."""
    rng = np.random.default_rng(seed)
    probes = [_Outputs(tree, tuple(p == q for p in paths), {}).cotangent(rng) for q in floating]
    twin = call.bind(reference)

    def zero_gradients(diff, rest, probes):
        _, pullback = jax.vjp(lambda *d: twin(d, rest), *diff)
        return [
            jnp.all(jnp.array([jnp.all(g == 0) for g in jax.tree.leaves(pullback(ct))]))
            for ct in probes
        ]

    args = (call.diff_values, call.rest_values, probes)
    flags = _compile(zero_gradients, *args)(*args)
    return [q for q, zero in zip(floating, flags, strict=True) if bool(zero)]


def _compile(fn: Callable, *args: Any) -> Callable:
    """``jax.jit(fn)`` for these args, compiled unoptimized: the checks' programs run once or
    twice, on small inputs, so compiling is most of their cost."""
    lowered = jax.jit(fn).lower(*args)
    options = _CPU_COMPILE_OPTIONS if jax.default_backend() == "cpu" else _COMPILE_OPTIONS
    try:
        return lowered.compile(options)
    except Exception:  # a backend without these options compiles as usual
        return lowered.compile()


@dataclass(frozen=True)
class _Plan:
    """How the finite differences are taken, and which comparisons run."""

    mode: str  # "full" (entry by entry) or "directional"
    h: float
    directions: int
    subset: int | None
    seed: int
    kinks: str  # "report" or "move"
    enabled: frozenset[str]

    def to_dict(self, policy: _Policy, entries: int) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "h": self.h,
            "coarse_h": COARSE * self.h,
            "directions": self.directions if self.mode == "directional" else None,
            "subset": self.subset,
            "entries": entries,
            "seed": self.seed,
            "kinks": self.kinks,
            "safety": SAFETY,
            "dtype_policy": policy.to_dict(),
            "comparisons": [k for k in COMPARISONS if k in self.enabled],
        }


def _plan(call, policy, mode, h, directions, subset, seed, kinks, jit, enabled) -> _Plan:
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"mode must be 'auto', 'full' or 'directional', got {mode!r}")
    if kinks not in ("report", "move"):
        raise ValueError(f"kinks must be 'report' or 'move', got {kinks!r}")
    for name, value in (("directions", directions), ("subset", subset)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if jit not in (True, False, "eager"):
        raise ValueError(f"jit must be True, False or 'eager', got {jit!r}")
    if h is not None and not (isinstance(h, int | float) and 0 < h < math.inf):
        raise ValueError(f"h must be a positive number, got {h!r}")
    sizes = [x.size for x in jax.tree.leaves(call.diff_values)]
    entries = sum(min(n, subset) if subset else n for n in sizes)
    if mode == "auto":
        mode = "full" if entries <= FULL_MODE_MAX else "directional"
    h = STEP.get(policy.numerical, 1e-2) if h is None else float(h)
    return _Plan(mode, h, directions, subset, seed, kinks, frozenset(enabled))


def _stencil(call: _Call, policy: _Policy, plan: _Plan, rng: np.random.Generator):
    """The points of the finite differences: per entry (full mode) or per (argument,
    direction) pair, the steps +h, -h, +Kh, -Kh. Returns (draws for the program, labels)."""
    leaves = jax.tree.leaves(call.diff_values)
    offsets = np.cumsum([0, *(x.size for x in leaves)])
    steps = np.array([1, -1, COARSE, -COARSE], np.float64) * plan.h
    if plan.mode == "full":
        labels = []
        for k, x in enumerate(leaves):
            pick = np.arange(x.size)
            if plan.subset and plan.subset < x.size:
                pick = np.sort(rng.choice(x.size, plan.subset, replace=False))
            labels += [(k, int(i)) for i in pick]
        index = np.repeat([offsets[k] + i for k, i in labels], 4).astype(np.int32)
        return {"index": index, "step": np.tile(steps, len(labels))}, labels
    u = rng.standard_normal((plan.directions, int(offsets[-1])))
    labels = [(k, j) for k in range(len(leaves)) for j in range(plan.directions)]
    segment = np.repeat(np.arange(len(leaves)), [x.size for x in leaves]).astype(np.int32)
    return {
        "u": jnp.asarray(u, policy.numerical),
        "segment": segment,
        "leaf": np.repeat([k for k, _ in labels], 4).astype(np.int32),
        "direction": np.repeat([j for _, j in labels], 4).astype(np.int32),
        "step": np.tile(steps, len(labels)),
    }, labels


def _draws(call: _Call, outputs: _Outputs, policy: _Policy, plan: _Plan) -> tuple[dict, list]:
    """Every random input of the program, from one seed."""
    rng = np.random.default_rng(plan.seed)
    v, v2, v3 = (outputs.cotangent(rng) for _ in range(3))
    # Drawn and stacked in NumPy: jnp would compile each little operation on its own.
    cotangents = jax.tree.map(
        lambda a, b, c: a if _is_float0(a) else np.stack([a, b, (3 * a + b).astype(a.dtype), c]),
        v,
        v2,
        v3,
    )

    def like_diff(draw):
        return jax.tree.map(lambda x: np.asarray(draw(x.shape), x.dtype), call.diff_values)

    draws = {
        "v": v,
        "cotangents": cotangents,
        "w": like_diff(rng.standard_normal),
        "jitter": like_diff(lambda s: 1 + 0.1 * rng.uniform(-1, 1, s)),
    }
    draws["stencil"], labels = _stencil(call, policy, plan, rng)
    return draws, labels


# --- the program ------------------------------------------------------------


def _piece(errors: dict, name: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` while tracing; an exception is recorded for its comparison and the
    program goes on without this piece: a rule that fails under one transformation
    fails that comparison only."""
    try:
        return fn(*args)
    except Exception as e:
        errors[name] = e
        return None


def _vjp(fn: Callable, diff: tuple, rest: tuple, *cotangents: Any) -> list:
    return _out_and_vjp(fn, diff, rest, *cotangents)[1]


def _out_and_vjp(fn: Callable, diff: tuple, rest: tuple, *cotangents: Any) -> tuple[Any, list]:
    out, pullback = jax.vjp(lambda *d: fn(d, rest), *diff)
    return out, [pullback(ct) for ct in cotangents]


def _second_order(fn: Callable, diff: tuple, rest: tuple, v: Any, w: Any) -> tuple[Any, Any]:
    """(grad of ``<vjp(v), w>``, ``vjp(v)``): reverse over reverse, through the rule's own bwd."""

    def inner(*d):
        (g,) = _vjp(fn, d, rest, v)
        leaves = zip(jax.tree.leaves(g), jax.tree.leaves(w), strict=True)
        return sum(jnp.sum(a.astype(b.dtype) * b) for a, b in leaves), g

    return jax.grad(inner, argnums=tuple(range(len(diff))), has_aux=True)(*diff)


def _is_float0(x: Any) -> bool:
    return x.dtype == jax.dtypes.float0


def _at(d: dict, i: int) -> Any:
    """The i-th of the stacked cotangents v, v2, 3 v + v2, v3 (float0 ones are not stacked)."""
    return jax.tree.map(lambda c: c if _is_float0(c) else c[i], d["cotangents"])


def _rule_vjps(fn: Callable, diff: tuple, rest: tuple, d: dict) -> tuple[Any, list]:
    """The output, and the rule's VJPs of v, v2 and 3 v + v2 at the args and of v3 at
    args * jitter (the second example of the vmap check)."""
    other = jax.tree.map(lambda x, j: x * j, diff, d["jitter"])
    out, grads = _out_and_vjp(fn, diff, rest, _at(d, 0), _at(d, 1), _at(d, 2))
    return out, [*grads, *_vjp(fn, other, rest, _at(d, 3))]


def _vmapped(fn: Callable, diff: tuple, rest: tuple, d: dict) -> Any:
    """The VJPs of v at the args and of v3 at args * jitter, batched by vmap."""
    other = jax.tree.map(lambda x, j: x * j, diff, d["jitter"])
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), diff, other)
    cts = jax.tree.map(lambda a, b: a if _is_float0(a) else jnp.stack([a, b]), _at(d, 0), _at(d, 3))
    axes = jax.tree.map(lambda c: None if _is_float0(c) else 0, d["cotangents"])
    return jax.vmap(lambda x, ct: _vjp(fn, x, rest, ct)[0], in_axes=(0, axes))(stacked, cts)


def _differences(fn, diff, rest, d, outputs: _Outputs, plan: _Plan, dtype: str) -> dict:
    """F = <v, f(x)> in ``dtype`` at every stencil point, at x, and the size of its terms."""
    diff, rest = _cast(diff, dtype), _cast(rest, dtype)
    flat, unravel = ravel_pytree(diff)
    flat = flat.astype(dtype)
    weights = [c.astype(dtype) for c in outputs.kept(d["v"])]

    def terms(x):
        leaves = outputs.kept(fn(unravel(x), rest))
        return [w * y.astype(dtype) for w, y in zip(weights, leaves, strict=True)]

    def F(x):
        return sum(jnp.sum(t) for t in terms(x))

    s = d["stencil"]
    if plan.mode == "full":
        points = (s["index"], s["step"].astype(dtype))
        evals = jax.lax.map(lambda p: F(flat.at[p[0]].add(p[1])), points)
    else:

        def at(p):
            j, k, step = p
            return F(flat + step * s["u"][j] * (s["segment"] == k).astype(dtype))

        evals = jax.lax.map(at, (s["direction"], s["leaf"], s["step"].astype(dtype)))
    at_x = terms(flat)
    return {
        "evals": evals,
        "F0": sum(jnp.sum(t) for t in at_x),
        "size": sum(jnp.sum(jnp.abs(t)) for t in at_x),
    }


def _program(call, manual, reference, outputs, policy, plan):
    """The check's one compiled program, and the dict its trace fills with the pieces'
    exceptions."""
    rule, errors = call.bind(manual), {}
    twin = None if reference is None else call.bind(reference)
    on = plan.enabled

    def run(diff, rest, d):
        got = {"rule": _piece(errors, "rule", _rule_vjps, rule, diff, rest, d)}
        if twin is not None:
            t_diff, t_rest = _cast(diff, policy.twin), _cast(rest, policy.twin)
            t_v, t_w = _cast(d["v"], policy.twin), _cast(d["w"], policy.twin)
            # The twin's VJP comes with its second order; without it if that raises.
            both = "second_order" in on and _piece(
                errors, "second_twin", _second_order, twin, t_diff, t_rest, t_v, t_w
            )
            if both:
                got["second_twin"], got["twin"] = both
            else:
                got["twin"] = (_piece(errors, "twin", _vjp, twin, t_diff, t_rest, t_v) or [None])[0]
        if "second_order" in on:
            both = _piece(errors, "second_rule", _second_order, rule, diff, rest, d["v"], d["w"])
            got["second_rule"] = both and both[0]
        if "vmap" in on:
            got["vmap"] = _piece(errors, "vmap", _vmapped, rule, diff, rest, d)
        if "vs_numerical" in on:
            got["numerical"] = _piece(
                errors,
                "numerical",
                _differences,
                call.bind(manual),
                diff,
                rest,
                d,
                outputs,
                plan,
                policy.numerical,
            )
        return got

    return run, errors


# --- comparing --------------------------------------------------------------


def _host(tree: Any) -> list[np.ndarray]:
    return [np.asarray(jax.device_get(x)).astype(np.float64) for x in jax.tree.leaves(tree)]


def _scale(leaves: Sequence[np.ndarray]) -> float:
    """The largest finite |value| over all leaves: the function's scale for this comparison."""
    values = [np.max(np.abs(x[np.isfinite(x)]), initial=0.0) for x in leaves]
    return float(max(values, default=0.0))


def _close(actual, expected, rtol, scale, magnitude=None) -> Comparison:
    """``|actual - expected| <= rtol * (magnitude + scale)``; magnitude is ``|expected|``
    by default."""
    if actual.shape != expected.shape:
        return _failed(f"shape {actual.shape}, expected {expected.shape}")
    magnitude = np.abs(expected) if magnitude is None else magnitude
    atol = rtol * max(scale, float(np.finfo(np.float64).tiny))
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    diff = np.where(same, 0.0, np.abs(actual - expected))
    allowed = rtol * magnitude + atol
    bad = ~(diff <= allowed)
    note = ""
    if bad.any():
        share = np.nan_to_num(diff / allowed, nan=np.inf, posinf=np.inf)
        worst = np.unravel_index(np.argmax(np.where(bad, share, -1)), diff.shape)
        note = (
            f"worst at {list(map(int, worst))}: {actual[worst]:.6g}, expected {expected[worst]:.6g}"
        )
    elif not np.isfinite(expected).all():
        note = f"both not finite at {int((~np.isfinite(expected)).sum())} entries"
    finite = np.where(np.isfinite(diff), diff, np.inf)
    return Comparison(
        "failed" if bad.any() else "ok",
        float(finite.max(initial=0.0)),
        float((finite / (np.abs(expected) + atol)).max(initial=0.0)),
        float((finite / allowed).max(initial=0.0)),
        {"rtol": rtol, "atol": atol, "scale": scale},
        int(diff.size),
        note=note,
    )


def _close_all(actual, expected, rtol, magnitudes=None) -> list[Comparison]:
    """:func:`_close` per leaf, with one scale for the whole function."""
    magnitudes = magnitudes or [None] * len(expected)
    scale = _scale(expected if magnitudes[0] is None else magnitudes)
    return [
        _close(a, e, rtol, scale, m) for a, e, m in zip(actual, expected, magnitudes, strict=True)
    ]


def _cotangents(got: Sequence[Any], primals: Sequence[Any]) -> list[Comparison]:
    out = []
    for g, x in zip(got, primals, strict=True):
        g_type, x_type = jax.typeof(g), jax.typeof(x)
        if (g_type.shape, g_type.dtype) == (x_type.shape, x_type.dtype):
            out.append(Comparison("ok", entries=int(x.size)))
        else:
            out.append(
                _failed(
                    f"the cotangent is {g_type.str_short()} for an input of {x_type.str_short()}"
                )
            )
    return out


def _entry_name(name: str, shape: tuple[int, ...], i: int) -> str:
    return f"{name}[{', '.join(map(str, np.unravel_index(i, shape)))}]" if shape else name


@dataclass(frozen=True)
class _Stencil:
    """Per label (an entry, or an (argument, direction) pair): the rule's derivative, the
    central difference, its tolerance's terms, and whether the stencil straddles a kink."""

    labels: list[tuple[int, int]]
    rule: np.ndarray
    central: np.ndarray
    tol: np.ndarray
    truncation: np.ndarray
    rounding_rule: np.ndarray
    rounding_fd: float
    floor: float
    kink: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        return np.abs(self.rule - self.central)


def _stencil_stats(g, fd, labels, policy: _Policy, plan: _Plan, u=None) -> _Stencil:
    """The noise model: ``|rule - D(h)| <= SAFETY * (truncation + rounding_fd +
    rounding_rule)``, with the truncation from Richardson (``|D(Kh) - D(h)| / (K^2 - 1)``),
    the differences' rounding ``16 eps |terms of F| / h`` and the rule's rounding
    ``rtol (|g| + scale)`` (in directional mode, four sigmas of its sum along u)."""
    h, coarse = plan.h, COARSE * plan.h
    fp, fm, fpk, fmk = np.asarray(fd["evals"], np.float64).reshape(-1, 4).T
    f0, size = float(fd["F0"]), float(fd["size"])
    central, wide = (fp - fm) / (2 * h), (fpk - fmk) / (2 * coarse)
    jump = np.abs((fp - f0) / h - (f0 - fm) / h)
    jump_coarse = np.abs((fpk - f0) / coarse - (f0 - fmk) / coarse)
    truncation = np.abs(wide - central) / (COARSE**2 - 1)
    rounding_fd = 16 * float(jnp.finfo(policy.numerical).eps) * abs(size) / h
    rtol, scale = _rtol(policy.rule), _scale(g)
    if plan.mode == "full":
        rule = np.array([g[k].ravel()[i] for k, i in labels])
        rounding_rule = rtol * (np.abs(rule) + scale)
    else:
        split = np.cumsum([x.size for x in g])[:-1]
        per_leaf = [np.split(row, split) for row in u]
        rule = np.array([g[k].ravel() @ per_leaf[j][k] for k, j in labels])
        rounding_rule = np.array(
            [
                4 * np.linalg.norm(rtol * (np.abs(g[k].ravel()) + scale) * per_leaf[j][k])
                for k, j in labels
            ]
        )
    tol = SAFETY * (truncation + rounding_fd + rounding_rule)
    bad = ~(np.abs(rule - central) <= tol)
    # A kink's jump in slope does not shrink with the step; a smooth function's does.
    kink = bad & np.isfinite(central) & (jump > KINK * jump_coarse / COARSE + tol)
    floor = SAFETY * (rounding_fd + rtol * scale)
    return _Stencil(labels, rule, central, tol, truncation, rounding_rule, rounding_fd, floor, kink)


def _numerical(stats: _Stencil, names, shapes, plan: _Plan) -> list[Comparison]:
    """vs_numerical per argument: failed, at a kink, or ok, with the worst entry named."""
    out = []
    for k, name in enumerate(names):
        mine = np.flatnonzero([label[0] == k for label in stats.labels])
        if not mine.size:
            out.append(_skipped("no entries checked"))
            continue

        def spot(i, k=k, name=name):
            j = stats.labels[i][1]
            return _entry_name(name, shapes[k], j) if plan.mode == "full" else f"direction {j}"

        parts = {
            "h": plan.h,
            "coarse_h": COARSE * plan.h,
            "truncation": float(stats.truncation[mine].max()),
            "rounding_fd": stats.rounding_fd,
            "rounding_rule": float(stats.rounding_rule[mine].max()),
            "safety": float(SAFETY),
        }
        out.append(_verdict(stats, mine, parts, spot))
    return out


def _verdict(stats: _Stencil, mine: np.ndarray, parts: dict, spot: Callable) -> Comparison:
    diff, tol, central = stats.diff[mine], stats.tol[mine], stats.central[mine]
    kink = stats.kink[mine]
    judged = ~kink
    finite = np.where(np.isfinite(diff), diff, np.inf)
    bad = judged & ~(finite <= tol)
    notes = []
    if bad.any():
        i = int(np.argmax(np.where(bad, finite / tol, -1)))
        what = f"{central[i]:.6g}" if np.isfinite(central[i]) else "not finite"
        notes.append(
            f"worst at {spot(mine[i])}: rule {stats.rule[mine][i]:.6g}, finite differences {what}"
        )
    if kink.any():
        spots = [spot(i) for i in mine[kink]]
        more = f" (+{len(spots) - 4} more)" if len(spots) > 4 else ""
        notes.append(
            f"{', '.join(spots[:4])}{more}: the differences straddle a kink there, so they "
            "cannot judge (kinks='move' moves those inputs away)"
        )
    if not judged.any():
        return Comparison(
            "kink",
            tolerance=parts,
            entries=int(mine.size),
            kinks=int(kink.sum()),
            note="; ".join(notes),
        )
    return Comparison(
        "failed" if bad.any() else "kink" if kink.any() else "ok",
        float(finite[judged].max()),
        float((finite / (np.abs(central) + stats.floor))[judged].max()),
        float((finite / tol)[judged].max()),
        parts,
        int(mine.size),
        int(kink.sum()),
        "; ".join(notes),
    )


@dataclass(frozen=True)
class _Eager:
    """The rule's VJP run eagerly (op by op): its result, or why there is none."""

    result: Any = None
    error: BaseException | None = None
    skipped: str = ""


def _eager(call: _Call, manual: Callable, v: Any, jit: bool | str, failed: bool) -> _Eager:
    """Eagerly each operation compiles on its own, so by default only small VJPs run so;
    ``jit="eager"`` (or a VJP that failed under jit) runs any."""
    rule = call.bind(manual)
    if jit != "eager" and not failed:
        try:
            jaxpr = jax.make_jaxpr(lambda d, r: _vjp(rule, d, r, v))(
                call.diff_values, call.rest_values
            )
        except Exception as e:
            return _Eager(error=e)
        ops = len(jaxpr.eqns)
        if ops > EAGER_MAX_OPS:
            return _Eager(
                skipped=f"ran under jit only: eagerly, each of the VJP's {ops} "
                f"operations (over {EAGER_MAX_OPS}) compiles on its own; "
                f"jit='eager' compares anyway"
            )
    try:
        out, (g,) = _out_and_vjp(rule, call.diff_values, call.rest_values, v)
        return _Eager((out, g))
    except Exception as e:
        return _Eager(error=e)


def _rule_failure(e: BaseException) -> str:
    """The comparison that an exception in the rule's VJP belongs to."""
    if "Custom VJP bwd rule must produce" in str(e):
        return "cotangents"  # JAX's own check of the cotangents' shapes and structure
    concrete = (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerArrayConversionError,
        jax.errors.TracerIntegerConversionError,
    )
    return "jit" if isinstance(e, concrete) else "vs_autodiff"


def _rule_raised(call, plan, e, eager, names) -> dict[str, list]:
    """The comparisons when the rule's VJP raised while tracing: the one the error belongs
    to fails (for the argument it names, if it names one); the others cannot run."""
    culprit = _rule_failure(e)
    note = _raised("the rule's VJP", e)
    if culprit == "jit" and eager is not None and eager.error is None:
        note = "it runs eagerly, but under jit " + note[len("the rule's VJP ") :]
    owners = [i for i in call.diff for _ in jax.tree.leaves(call.args[i])]
    named = re.search(r"at output\[(\d+)\]", str(e)) if culprit == "cotangents" else None
    blamed = [named is None or int(named[1]) == i for i in owners]
    whose = ", ".join(n for n, b in zip(names, blamed, strict=True) if b)
    skipped = _skipped(f"needs the rule's VJP, which raised (see {culprit} of {whose})")
    table = {k: [skipped] * len(owners) for k in plan.enabled}
    table[culprit] = [_failed(note) if b else skipped for b in blamed]
    return table


def _raised(what: str, e: BaseException) -> str:
    return f"{what} raised {type(e).__name__}: {_first_line(e)}"


def _judge(call, outputs, policy, plan, got, errors, eager, draws, labels, names) -> dict:
    """Every comparison, per differentiated leaf."""
    primals = jax.tree.leaves(call.diff_values)
    n = len(primals)
    table = {
        k: [_skipped(f"{k} is switched off")] * n for k in COMPARISONS if k not in plan.enabled
    }
    if "rule" in errors:
        table.update(_rule_raised(call, plan, errors["rule"], eager, names))
        return table
    rtol = _rtol(policy.rule)
    out, grads = got["rule"]
    g, g2, g_lin, g3 = (_host(x) for x in grads)
    if "cotangents" in plan.enabled:
        table["cotangents"] = _cotangents(jax.tree.leaves(grads[0]), primals)
    if "twin" in errors:
        table["vs_autodiff"] = [_failed(_raised("the twin", errors["twin"]))] * n
    elif "twin" in got:
        table["vs_autodiff"] = _close_all(g, _host(got["twin"]), rtol)
    else:
        table["vs_autodiff"] = [_skipped("no twin (reference=None)")] * n
    if "linearity" in plan.enabled:
        expected = [3 * a + b for a, b in zip(g, g2, strict=True)]
        magnitudes = [3 * np.abs(a) + np.abs(b) for a, b in zip(g, g2, strict=True)]
        table["linearity"] = _close_all(g_lin, expected, rtol, magnitudes)
    if "vmap" in plan.enabled:
        table["vmap"] = _judge_vmap(got, errors, g, g3, rtol, n)
    if "jit" in plan.enabled:
        if eager.error is not None:
            table["jit"] = [_failed(_raised("eagerly, the rule's VJP", eager.error))] * n
        elif eager.skipped:
            table["jit"] = [Comparison("ok", tolerance={"eager": False}, note=eager.skipped)] * n
        else:
            table["jit"] = _judge_jit(eager.result, out, g, outputs, rtol)
    if "second_order" in plan.enabled:
        table["second_order"] = _judge_second_order(got, errors, rtol, n)
    if "vs_numerical" in plan.enabled:
        if "numerical" in errors:
            note = _raised(f"the function in {policy.numerical}", errors["numerical"])
            table["vs_numerical"] = [_failed(note)] * n
        else:
            stats = _stencil_stats(g, got["numerical"], labels, policy, plan, _u(draws, plan))
            table["vs_numerical"] = _numerical(stats, names, [x.shape for x in primals], plan)
    return table


def _u(draws: dict, plan: _Plan) -> np.ndarray | None:
    return None if plan.mode == "full" else np.asarray(draws["stencil"]["u"], np.float64)


def _judge_jit(eager, out, g, outputs, rtol) -> list[Comparison]:
    """The eager VJP against the jitted one, and the eager output against the jitted one."""
    forward = _close_all(_host(outputs.kept(eager[0])), _host(outputs.kept(out)), rtol)
    bad = [c for c in forward if not c.ok]
    if bad:
        return [_failed(f"the output differs eagerly: {bad[0].note}")] * len(g)
    return _close_all(_host(eager[1]), g, rtol)


def _judge_vmap(got, errors, g, g3, rtol, n) -> list[Comparison]:
    if "vmap" in errors:
        return [_failed(_raised("under vmap, the rule's VJP", errors["vmap"]))] * n
    batched = _host(got["vmap"])
    first = _close_all([b[0] for b in batched], g, rtol)
    second = _close_all([b[1] for b in batched], g3, rtol)
    return [_worst([a, b]) for a, b in zip(first, second, strict=True)]


def _judge_second_order(got, errors, rtol, n) -> list[Comparison]:
    if "second_twin" in errors:
        return [
            _skipped(
                _raised("the twin is not twice differentiable: grad of grad", errors["second_twin"])
            )
        ] * n
    if "second_rule" in errors:
        note = _raised("grad of grad through the rule", errors["second_rule"])
        return [_failed(note + "; second_order=False checks a first-order rule")] * n
    if "second_twin" not in got:
        return [_skipped("no twin (reference=None)")] * n
    return _close_all(_host(got["second_rule"]), _host(got["second_twin"]), rtol)


def _move_kinks(call, policy, plan, program, got, draws, labels, names):
    """vs_numerical again, with the inputs at a kink moved off it, and how many moved.

    Full mode moves each entry at a kink by twice the coarse step (at least a few of its
    dtype's ulps) to a random side. Directional mode cannot tell which entries of a
    direction sit at the kink, so it moves every entry of those arguments by a random
    100 coarse steps.
    """
    g = _host(got["rule"][1][0])
    stats = _stencil_stats(g, got["numerical"], labels, policy, plan, _u(draws, plan))
    rng = np.random.default_rng([plan.seed, 1])
    kinked = {labels[i] for i in np.flatnonzero(stats.kink)}
    leaves, treedef = jax.tree.flatten(call.diff_values)
    moved, count = [], 0
    for k, x in enumerate(leaves):
        y = np.asarray(jax.device_get(x)).astype(np.float64).ravel()
        ulp = 4 * float(jnp.finfo(x.dtype).eps) * np.maximum(np.abs(y), 1.0)
        if plan.mode == "full":
            spots = [i for kk, i in kinked if kk == k]
            step = np.maximum(2 * COARSE * plan.h, ulp[spots])
            y[spots] += step * rng.choice([-1.0, 1.0], len(spots))
            count += len(spots)
        elif any(kk == k for kk, _ in kinked):
            y += np.maximum(100 * COARSE * plan.h, ulp) * rng.standard_normal(y.size)
            count += y.size
        moved.append(jnp.asarray(y.reshape(x.shape), x.dtype))
    diff = jax.tree.unflatten(treedef, moved)
    again = program(diff, call.rest_values, draws)
    g = _host(again["rule"][1][0])
    stats = _stencil_stats(g, again["numerical"], labels, policy, plan, _u(draws, plan))
    return _numerical(stats, names, [x.shape for x in leaves], plan), count


def compare_gradients(
    manual: Callable[..., Any],
    reference: Callable[..., Any] | None,
    args: Sequence[Any],
    *,
    argnums: int | Sequence[int] | None = None,
    nondiff_argnums: Sequence[int] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    mode: str = "auto",
    h: float | None = None,
    directions: int = DIRECTIONS,
    subset: int | None = None,
    seed: int = 0,
    kinks: str = "report",
    state_outputs: Sequence[str] | None = None,
    numerical: bool = True,
    vmap: bool = True,
    jit: bool | str = True,
    cotangents: bool = True,
    linearity: bool = True,
    second_order: bool = True,
) -> GradientCheck:
    """Checks a function's hand-written backward rules, one verdict per comparison and argument.

    The rule's VJP of a random cotangent ``v`` is compared with ``jax.grad`` of
    ``reference`` (``vs_autodiff``) and with central differences of ``manual``
    (``vs_numerical``, taken in float64 when the rule runs in float32 or lower); the
    rule is also checked under ``vmap`` and ``jit``, for its cotangents' shapes and
    dtypes, for linearity in ``dout`` and at second order against the twin. Each
    comparison can be switched off by its flag. ``docs/checking.md`` has the noise model.

    Args:
        manual: the function whose backward rules are checked.
        reference: the same function in plain jnp with the same signature, or None.
        args: positional arguments. Arrays and pytrees of arrays (a params dict) are
            traced; other values (strides, flags) are passed through as static
            Python values, as ``custom_vjp``'s ``nondiff_argnums`` need.
        argnums: the arguments to differentiate; by default every floating one.
        nondiff_argnums: arguments passed through as static values even if arrays.
        kwargs: keyword arguments for both functions, passed through as static values.
        name: the name in the report; by default ``manual.__name__``.
        mode: ``"full"`` (entry by entry), ``"directional"`` (``<v, J u>`` along
            ``directions`` random ``u`` per argument) or ``"auto"``: full up to
            :data:`FULL_MODE_MAX` entries.
        h: the finite-difference step; by default 1e-5 in float64, 1e-2 in float32.
        directions: random directions per argument in directional mode.
        subset: in full mode, check this many random entries per argument.
        seed: seeds the cotangents, directions and subsets (recorded in the report).
        kinks: ``"report"`` entries at a kink, or ``"move"`` them away and check there.
        state_outputs: output leaves (as ``jax.tree_util.keystr`` paths, e.g. ``"[1][0]"``)
            that carry no gradient by design. By default, with several floating
            outputs, those through which the twin passes no gradient.
        numerical, vmap, jit, cotangents, linearity, second_order: switch a comparison
            off with False. ``jit=True`` compares with an eager run for VJPs of up to
            :data:`EAGER_MAX_OPS` operations and runs larger ones jitted only;
            ``jit="eager"`` compares any.

    Returns:
        A :class:`GradientCheck`: per argument, one :class:`Comparison` per entry of
        :data:`COMPARISONS`, each with its numbers and tolerance.
    """
    call = _call(args, argnums, nondiff_argnums, kwargs)
    names = _leaf_names(call, _argument_names(manual, len(call.args)))
    policy = _policy(call, manual)
    switches = {
        "vs_numerical": numerical,
        "vmap": vmap,
        "jit": jit,
        "cotangents": cotangents,
        "linearity": linearity,
        "second_order": second_order,
    }
    enabled = {k for k in COMPARISONS if switches.get(k, True)}
    plan = _plan(call, policy, mode, h, directions, subset, seed, kinks, jit, enabled)
    outputs = _outputs(call, manual, reference, state_outputs, seed)
    draws, labels = _draws(call, outputs, policy, plan)
    run, errors = _program(call, manual, reference, outputs, policy, plan)
    program = _compile(run, call.diff_values, call.rest_values, draws)
    got = program(call.diff_values, call.rest_values, draws)
    failed = "rule" in errors
    eager = _eager(call, manual, draws["v"], jit, failed) if jit or failed else None
    table = _judge(call, outputs, policy, plan, got, errors, eager, draws, labels, names)
    settings = plan.to_dict(policy, len(labels))
    if kinks == "move" and any(c.kinks for c in table.get("vs_numerical", [])):
        table["vs_numerical"], settings["moved_entries"] = _move_kinks(
            call, policy, plan, program, got, draws, labels, names
        )
    arguments = tuple(
        ArgumentCheck(name_, tuple(x.shape), str(x.dtype), {k: table[k][i] for k in COMPARISONS})
        for i, (name_, x) in enumerate(zip(names, jax.tree.leaves(call.diff_values), strict=True))
    )
    return GradientCheck(
        name or getattr(manual, "__name__", "function"),
        policy.rule,
        arguments,
        settings,
        dict(outputs.skipped),
    )
