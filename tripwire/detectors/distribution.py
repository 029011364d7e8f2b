"""Distribution drift between a binned reference profile and a window of live values.

The reference side is never raw data: it is the histogram stored in a reference
profile (see ``docs/reference-format.md``). Every statistic here is therefore
computed on bins, which keeps the per-window state to ``k`` integer counts and
makes folding a window a single ``searchsorted`` + ``bincount``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tripwire.detectors.statistics import BinnedReference, chi_square, js_distance, ks_binned, psi, wasserstein_binned
from tripwire.detectors.tally import tally

__all__ = [
    "psi",
    "js_distance",
    "wasserstein_binned",
    "ks_binned",
    "chi_square",
    "NumericDrift",
    "CategoricalDrift",
    "drift_detector_for",
    "fold_numeric_columns",
]

OTHER_LABEL = "<other>"
"""Label of the bucket that collects categories absent from the reference profile."""

_TOP_BINS = 3


# --------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------


def _top_bins(labels: Sequence[str], ref: list[float], cur: list[float]) -> list[dict[str, Any]]:
    # sorted() is stable, so ties are reported in bin order, keeping output deterministic.
    order = sorted(range(len(ref)), key=lambda i: -abs(cur[i] - ref[i]))[:_TOP_BINS]
    return [{"bin": labels[i], "reference": ref[i], "current": cur[i]} for i in order]


class _BinnedWindow:
    """The window histogram both drift detectors keep on their ``_k`` reference bins."""

    _k: int

    @property
    def n(self) -> int:
        """Number of values folded in since the last reset."""
        return self._n

    @property
    def counts(self) -> np.ndarray:
        """Copy of the window count per bin (for categories: reference categories, then other)."""
        return self._counts.copy()

    def reset(self) -> None:
        """Forget the current window; the reference is kept."""
        self._counts = np.zeros(self._k, dtype=np.int64)
        self._n = 0

    def summary(self) -> dict[str, Any]:
        """The window as mergeable plain data (no reference): its counts on the reference bins."""
        return {"counts": self._counts.tolist(), "n": self._n}

    def merge(self, summary: Mapping[str, Any]) -> None:
        """Add another window's :meth:`summary` (of a detector on the same reference) to this window."""
        counts = np.asarray(summary["counts"], dtype=np.int64)
        if counts.shape != (self._k,):
            raise ValueError(f"expected {self._k} counts, got {counts.shape}")
        self._counts += counts
        self._n += int(summary["n"])


class NumericDrift(_BinnedWindow):
    """Drift of a numeric feature against its binned reference profile.

    Live values are folded into the reference bins (``bin = bisect_right(edges, x)``)
    and the window histogram is compared to the reference with PSI, Jensen-Shannon
    distance, Wasserstein distance (on the reference bin means, scaled by the
    reference standard deviation) and a binned two-sample KS test. Non-finite values
    (NaN, inf) and ``None`` are ignored: data quality is monitored elsewhere.

    Parameters
    ----------
    profile
        A numeric feature profile (``kind == "numeric"``) with at least ``edges``,
        ``fractions``, ``bin_means``, ``std`` and ``count``.

    Examples
    --------
    >>> import numpy as np
    >>> profile = {"kind": "numeric", "count": 1000, "missing_rate": 0.0,
    ...            "edges": [-1.0, 0.0, 1.0], "fractions": [0.16, 0.34, 0.34, 0.16],
    ...            "bin_means": [-1.5, -0.5, 0.5, 1.5], "mean": 0.0, "std": 1.0,
    ...            "min": -3.5, "max": 3.5}
    >>> rng = np.random.default_rng(42)

    >>> stable = NumericDrift(profile)
    >>> stable.update_many(rng.normal(0.0, 1.0, size=2000))
    >>> r = stable.result()
    >>> r["n"], r["psi"] < 0.1, r["ks_pvalue"] > 0.01
    (2000, True, True)

    >>> shifted = NumericDrift(profile)
    >>> shifted.update_many(rng.normal(1.0, 1.0, size=2000))
    >>> r = shifted.result()
    >>> r["psi"] > 0.25, r["ks_pvalue"] < 1e-6, r["top_bins"][0]["bin"]
    (True, True, '[1.0, inf)')

    References
    ----------
    [^1]: Yurdakul, B. (2018). Statistical properties of population stability index.
    [^2]: Rabanser, S., Günnemann, S., & Lipton, Z. (2019). Failing loudly: an empirical
    study of methods for detecting dataset shift. NeurIPS 32.

    """

    def __init__(self, profile: Mapping[str, Any]) -> None:
        if profile.get("kind", "numeric") != "numeric":
            raise ValueError(f"not a numeric profile: kind={profile.get('kind')!r}")
        edges = np.asarray(profile["edges"], dtype=np.float64)
        fractions = np.asarray(profile["fractions"], dtype=np.float64)
        k = edges.size + 1
        if fractions.size != k:
            raise ValueError(f"{edges.size} edges need {k} fractions, got {fractions.size}")
        if edges.size and not np.all(np.diff(edges) > 0):
            raise ValueError("edges must be strictly increasing")
        if fractions.sum() <= 0 or np.any(fractions < 0):
            raise ValueError("fractions must be non-negative with a positive sum")
        std = profile.get("std")
        self._profile: dict[str, Any] = {
            "kind": "numeric",
            "edges": edges.tolist(),
            "fractions": fractions.tolist(),
            "bin_means": list(profile.get("bin_means") or [None] * k),
            "std": None if std is None else float(std),
            "mean": None if profile.get("mean") is None else float(profile["mean"]),
            "count": int(profile["count"]),
        }
        if len(self._profile["bin_means"]) != k:
            raise ValueError(f"need {k} bin_means, got {len(self._profile['bin_means'])}")
        self._k = k
        self._edges = edges
        self._edges_list = edges.tolist()  # bisect on a list beats numpy for one scalar
        # Profiles are rounded when written; renormalising keeps CDFs ending at exactly 1.
        self._ref = (fractions / fractions.sum()).tolist()
        self._support = self._fill_support(self._profile["bin_means"], edges).tolist()
        self._scale = float(std) if std and math.isfinite(std) and std > 0 else 1.0
        self._reference = BinnedReference(self._ref, n_ref=self._profile["count"], support=self._support)
        lo = [-math.inf, *self._edges_list]
        hi = [*self._edges_list, math.inf]
        self._labels = [f"[{a!r}, {b!r})" for a, b in zip(lo, hi)]
        self.reset()

    @staticmethod
    def _fill_support(bin_means: Sequence[Any], edges: np.ndarray) -> np.ndarray:
        # A reference bin can be empty and then has no mean; any point inside the bin
        # works because an empty reference bin carries no reference mass.
        out = np.empty(len(bin_means), dtype=np.float64)
        for i, m in enumerate(bin_means):
            if m is not None and math.isfinite(float(m)):
                out[i] = float(m)
            elif edges.size == 0:
                out[i] = 0.0
            elif i == 0:
                out[i] = edges[0]
            elif i == len(bin_means) - 1:
                out[i] = edges[-1]
            else:
                out[i] = 0.5 * (edges[i - 1] + edges[i])
        return out

    def reset(self) -> None:
        """Forget the current window; the reference is kept."""
        super().reset()
        self._total = 0.0

    def summary(self) -> dict[str, Any]:
        """The window as mergeable plain data: counts on the reference bins and the sum of the values."""
        return {**super().summary(), "total": self._total}

    def merge(self, summary: Mapping[str, Any]) -> None:
        """Add another window's :meth:`summary` (counts add; the sums add in the order merged)."""
        super().merge(summary)
        self._total += float(summary["total"])

    def update(self, x: float | None) -> None:
        """Fold one value into the window (non-finite values and ``None`` are ignored)."""
        if x is None:
            return
        x = float(x)
        if not math.isfinite(x):
            return
        self._counts[bisect.bisect_right(self._edges_list, x)] += 1
        self._n += 1
        self._total += x

    def update_many(self, xs: np.ndarray | Sequence[float]) -> None:
        """Fold a batch of values into the window in one vectorised step."""
        xs = np.asarray(xs, dtype=np.float64).ravel()
        finite = np.isfinite(xs)
        if not finite.all():
            xs = xs[finite]
        if xs.size == 0:
            return
        idx = np.searchsorted(self._edges, xs, side="right")
        self._counts += np.bincount(idx, minlength=self._k)
        self._n += int(xs.size)
        self._total += float(xs.sum())

    def _update_ascending(self, xs: np.ndarray, ascending: np.ndarray) -> None:
        """:meth:`update_many` of finite values ``xs``, given them also sorted (``ascending``)."""
        if xs.size == 0:
            return
        # Counting the values below each edge in the sorted values is a binary search per edge,
        # where searchsorted(edges, xs) is one per value (and a slow one on unsorted values).
        below = ascending.searchsorted(self._edges, side="left")
        counts = self._counts
        counts[:-1] += below
        counts[1:] -= below
        counts[-1] += xs.size
        self._n += int(xs.size)
        self._total += float(xs.sum())  # of the values in window order, as update_many adds them

    def result(self) -> dict[str, Any]:
        """Drift statistics of the current window against the reference.

        Returns
        -------
        dict
            ``n``, ``psi``, ``js``, ``wasserstein`` (in reference standard
            deviations), ``ks_statistic``, ``ks_pvalue``, ``mean`` (window mean) and
            ``top_bins`` (up to 3 bins with the largest absolute fraction change).
            With an empty window every statistic is ``None`` and ``top_bins`` is empty.

        """
        if self._n == 0:
            return {"n": 0, "psi": None, "js": None, "wasserstein": None,
                    "ks_statistic": None, "ks_pvalue": None, "mean": None, "top_bins": []}
        counts = self._counts.tolist()
        n = self._n
        cur = [c / n for c in counts]
        reference = self._reference
        d, p = reference.ks(counts)
        return {
            "n": n,
            "psi": reference.psi(cur),
            "js": reference.js_distance(cur),
            "wasserstein": reference.wasserstein(cur) / self._scale,
            "ks_statistic": d,
            "ks_pvalue": p,
            "mean": self._total / self._n,
            "top_bins": _top_bins(self._labels, self._ref, cur),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the reference it needs plus the window counts."""
        return {
            "type": "NumericDrift",
            "profile": {**self._profile, "bin_means": list(self._profile["bin_means"])},
            "counts": self._counts.tolist(),
            "n": self._n,
            "total": self._total,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericDrift:
        """Rebuild a detector from :meth:`to_dict` output."""
        obj = _with_counts(cls(d["profile"]), d)
        obj._total = float(d["total"])
        return obj


class CategoricalDrift(_BinnedWindow):
    """Drift of a categorical feature against its reference category fractions.

    Each reference category is a bin and one extra bin (labelled ``"<other>"``)
    collects every value the profile does not list. A value is looked up as is, then
    as ``str(value)`` (profile keys are JSON strings). ``None`` and NaN are ignored.
    The window is compared to the reference with PSI, Jensen-Shannon distance and a
    chi-square goodness-of-fit test.

    Parameters
    ----------
    profile
        A categorical feature profile (``kind == "categorical"``) with
        ``categories`` (name -> fraction), ``other`` and ``count``.

    Examples
    --------
    >>> import random
    >>> profile = {"kind": "categorical", "count": 392, "missing_rate": 0.0,
    ...            "categories": {"USA": 0.625, "Japan": 0.2, "Europe": 0.175}, "other": 0.0}
    >>> rng = random.Random(7)

    >>> det = CategoricalDrift(profile)
    >>> det.update_many(rng.choices(["USA", "Japan", "Europe"], [0.625, 0.2, 0.175], k=1000))
    >>> r = det.result()
    >>> r["n"], r["psi"] < 0.1, r["chi2_pvalue"] > 0.01
    (1000, True, True)

    >>> det.reset()
    >>> det.update_many(rng.choices(["USA", "Japan", "Korea"], [0.3, 0.4, 0.3], k=1000))
    >>> r = det.result()
    >>> r["psi"] > 0.25, r["chi2_pvalue"] < 1e-6, [b["bin"] for b in r["top_bins"]]
    (True, True, ['<other>', 'USA', 'Europe'])

    References
    ----------
    [^1]: Pearson, K. (1900). On the criterion that a given system of deviations from the
    probable ... Philosophical Magazine, 50(302), 157-175.
    [^2]: Lin, J. (1991). Divergence measures based on the Shannon entropy. IEEE
    Transactions on Information Theory, 37(1), 145-151.

    """

    def __init__(self, profile: Mapping[str, Any]) -> None:
        if profile.get("kind", "categorical") != "categorical":
            raise ValueError(f"not a categorical profile: kind={profile.get('kind')!r}")
        categories = {str(name): float(f) for name, f in dict(profile["categories"]).items()}
        other = float(profile.get("other") or 0.0)
        fractions = np.asarray([*categories.values(), other], dtype=np.float64)
        if fractions.sum() <= 0 or np.any(fractions < 0):
            raise ValueError("fractions must be non-negative with a positive sum")
        self._profile: dict[str, Any] = {
            "kind": "categorical",
            "categories": categories,
            "other": other,
            "count": int(profile.get("count") or 0),
        }
        self._k = len(categories) + 1
        self._other = self._k - 1
        self._index: dict[Any, int] = {name: i for i, name in enumerate(categories)}
        self._ref = (fractions / fractions.sum()).tolist()
        self._labels = [*categories, OTHER_LABEL]
        self._reference = BinnedReference(self._ref)
        self.reset()


    def _bin(self, value: Any) -> int | None:
        try:
            i = self._index.get(value)
        except TypeError:  # unhashable values can still match through str()
            i = None
        if i is not None:
            return i
        if value is None or (isinstance(value, float) and value != value):
            return None
        if not isinstance(value, str):
            i = self._index.get(str(value))
        # No memoisation of misses: high-cardinality streams (ids) would grow it forever.
        return self._other if i is None else i

    def update(self, value: Any) -> None:
        """Fold one value into the window (``None`` and NaN are ignored)."""
        i = self._bin(value)
        if i is None:
            return
        self._counts[i] += 1
        self._n += 1

    def update_many(self, values: Iterable[Any]) -> None:
        """Fold a batch of values into the window.

        Values are tallied with :func:`~tripwire.detectors.tally.tally` (C speed) and only the
        distinct values are mapped to bins, which is what keeps this cheap: a window
        has thousands of values but only a handful of categories.
        """
        if isinstance(values, np.ndarray):
            values = values.tolist()  # numpy scalars hash slower than Python objects
        counts = self._counts
        added = 0
        for value, c in tally(values).items():
            i = self._bin(value)
            if i is not None:
                counts[i] += c
                added += c
        self._n += added

    def result(self) -> dict[str, Any]:
        """Drift statistics of the current window against the reference.

        Returns
        -------
        dict
            ``n``, ``psi``, ``js``, ``chi2_statistic``, ``chi2_pvalue`` and
            ``top_bins`` (up to 3 bins with the largest absolute fraction change;
            ``bin`` is the category name or ``"<other>"``). With an empty window every
            statistic is ``None`` and ``top_bins`` is empty.

        """
        if self._n == 0:
            return {"n": 0, "psi": None, "js": None, "chi2_statistic": None,
                    "chi2_pvalue": None, "top_bins": []}
        counts = self._counts.tolist()
        n = self._n
        cur = [c / n for c in counts]
        reference = self._reference
        stat, p = reference.chi_square(counts)
        return {
            "n": n,
            "psi": reference.psi(cur),
            "js": reference.js_distance(cur),
            "chi2_statistic": stat,
            "chi2_pvalue": p,
            "top_bins": _top_bins(self._labels, self._ref, cur),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the reference it needs plus the window counts."""
        return {
            "type": "CategoricalDrift",
            "profile": {**self._profile, "categories": dict(self._profile["categories"])},
            "counts": self._counts.tolist(),
            "n": self._n,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalDrift:
        """Rebuild a detector from :meth:`to_dict` output."""
        return _with_counts(cls(d["profile"]), d)


def fold_numeric_columns(detectors: Sequence[NumericDrift], floats: np.ndarray) -> None:
    """``detectors[i].update_many(floats[i])`` for each row of the 2-D ``floats``, with one sort for all rows.

    >>> a = NumericDrift({"kind": "numeric", "count": 10, "edges": [0.0], "fractions": [0.5, 0.5]})
    >>> b = NumericDrift({"kind": "numeric", "count": 10, "edges": [1.0, 2.0], "fractions": [0.2, 0.3, 0.5]})
    >>> fold_numeric_columns([a, b], np.array([[-1.0, 0.0, 0.5], [1.0, 3.0, float("nan")]]))
    >>> a.counts.tolist(), b.counts.tolist(), b.n
    ([1, 2], [0, 1, 1], 2)
    """
    ascending = np.sort(floats, axis=1)
    for detector, xs, row_ascending, finite in zip(detectors, floats, ascending, np.isfinite(floats).all(axis=1).tolist()):
        if finite:
            detector._update_ascending(xs, row_ascending)
        else:
            detector.update_many(xs)


def _with_counts(detector: _BinnedWindow, state: Mapping[str, Any]) -> Any:
    """Restore saved window counts into a freshly built detector, checking they fit its bins."""
    counts = np.asarray(state["counts"], dtype=np.int64)
    if counts.shape != (detector._k,):
        raise ValueError(f"expected {detector._k} counts, got {counts.shape}")
    detector._counts = counts
    detector._n = int(state["n"])
    return detector


def drift_detector_for(profile: Mapping[str, Any]) -> NumericDrift | CategoricalDrift:
    """Build the drift detector that matches a feature profile's ``kind``.

    Examples
    --------
    >>> type(drift_detector_for({"kind": "categorical", "count": 2,
    ...                          "categories": {"a": 1.0}, "other": 0.0})).__name__
    'CategoricalDrift'

    """
    kind = profile.get("kind")
    if kind == "numeric":
        return NumericDrift(profile)
    if kind == "categorical":
        return CategoricalDrift(profile)
    raise ValueError(f"unknown profile kind: {kind!r}")
