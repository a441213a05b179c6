"""Assertions for tests of hand-written backward rules.

``assert_rule(fn, twin, *args, **options)`` runs :func:`funcbp.compare_gradients`
and raises ``AssertionError`` with the per-argument report when any comparison
fails, the way chex's ``assert_*`` functions do, so a pytest failure shows the
table and what failed::

    from funcbp.testing import assert_rule

    def test_my_tanh():
        assert_rule(my_tanh, jnp.tanh, x)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from funcbp.gradcheck import GradientCheck, compare_gradients, format_report

__all__ = ["assert_rule"]


def assert_rule(
    fn: Callable[..., Any], twin: Callable[..., Any] | None, *args: Any, **options: Any
) -> GradientCheck:
    """Asserts that ``fn``'s backward rules pass every comparison against ``twin``.

    Args:
        fn: the function built from ``custom_vjp`` rules.
        twin: the same function in plain jnp (or None: no autodiff comparisons).
        *args: its positional arguments, as for :func:`funcbp.compare_gradients`.
        **options: :func:`funcbp.compare_gradients`'s options (``argnums``,
            ``kwargs``, ``mode``, ``second_order=False``, ...).

    Returns:
        The report, for further assertions (a kink is not a failure).

    Raises:
        AssertionError: naming each failed comparison, per argument, with its
            numbers and tolerance.
    """
    __tracebackhide__ = True  # pytest's traceback ends at the caller's line
    report = compare_gradients(fn, twin, args, **options)
    if not report.ok:
        raise AssertionError(
            f"assert_rule: {report.name} failed {', '.join(report.failed)}\n"
            + format_report([report], title="assert_rule")
        )
    return report
