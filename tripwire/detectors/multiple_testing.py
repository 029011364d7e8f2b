"""Multiple-testing corrections for the per-feature drift tests of one window.

A model with dozens of features runs dozens of tests per window; without a
correction the chance of at least one false alarm grows with the feature count.

P-values that are ``None`` or NaN (a test that could not run, e.g. an empty
window) are never rejected and are not counted as hypotheses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["benjamini_hochberg", "bonferroni"]


def _valid(pvalues: Sequence[float | None], alpha: float) -> tuple[list[float], list[int]]:
    """The p-values as floats and the positions of the valid ones (a handful: plain Python beats numpy)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = [math.nan if v is None else float(v) for v in pvalues]
    ok = [i for i, v in enumerate(p) if v == v]
    if any(p[i] < 0 or p[i] > 1 for i in ok):
        raise ValueError("p-values must lie in [0, 1]")
    return p, ok


def benjamini_hochberg(pvalues: Sequence[float | None], alpha: float) -> list[bool]:
    """Benjamini-Hochberg step-up procedure controlling the false discovery rate.

    With the ``m`` valid p-values sorted ascending, find the largest rank ``k`` with
    ``p_(k) <= k * alpha / m`` and reject the ``k`` smallest. Rejects exactly the
    hypotheses whose BH-adjusted p-value is ``<= alpha``.

    Parameters
    ----------
    pvalues
        One p-value per hypothesis; ``None`` / NaN entries are skipped.
    alpha
        Target false discovery rate, in ``(0, 1)``.

    Returns
    -------
    list of bool
        ``True`` where the hypothesis is rejected, in input order.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.036, 0.03, 0.5], alpha=0.05)
    [True, True, True, False]
    >>> benjamini_hochberg([0.01, 0.04, None, 0.5], alpha=0.05)
    [True, False, False, False]

    References
    ----------
    [^1]: Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate:
    a practical and powerful approach to multiple testing. Journal of the Royal
    Statistical Society, Series B, 57(1), 289-300.

    """
    p, ok = _valid(pvalues, alpha)
    out = [False] * len(p)
    m = len(ok)
    order = sorted(ok, key=p.__getitem__)  # sorted() is stable
    passed = [rank for rank, i in enumerate(order, start=1) if p[i] <= alpha * rank / m]
    if passed:
        # Step-up: everything ranked at or below the largest passing rank is rejected,
        # even if its own p-value misses its own threshold.
        for i in order[: passed[-1]]:
            out[i] = True
    return out


def bonferroni(pvalues: Sequence[float | None], alpha: float) -> list[bool]:
    """Bonferroni correction controlling the family-wise error rate.

    Reject hypothesis ``i`` when ``p_i <= alpha / m`` with ``m`` the number of valid
    p-values.

    Parameters
    ----------
    pvalues
        One p-value per hypothesis; ``None`` / NaN entries are skipped.
    alpha
        Target family-wise error rate, in ``(0, 1)``.

    Returns
    -------
    list of bool
        ``True`` where the hypothesis is rejected, in input order.

    Examples
    --------
    >>> bonferroni([0.01, 0.04, 0.03, 0.5], alpha=0.05)
    [True, False, False, False]

    References
    ----------
    [^1]: Dunn, O. J. (1961). Multiple comparisons among means. Journal of the American
    Statistical Association, 56(293), 52-64.

    """
    p, ok = _valid(pvalues, alpha)
    out = [False] * len(p)
    for i in ok:
        out[i] = p[i] <= alpha / len(ok)
    return out
