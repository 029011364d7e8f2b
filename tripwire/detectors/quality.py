"""Data-quality counters for one input feature, checked against its reference profile."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tripwire.detectors.plain import plain_floats
from tripwire.detectors.tally import tally

__all__ = ["FeatureQuality", "check_numeric_columns"]

_MAX_EXAMPLES = 5
_TEXT_OR_MISSING = frozenset({str, type(None)})
_EXACT_INT = 2.0**53  # up to here an int converts to a float exactly, so comparisons agree


class FeatureQuality:
    """Count missing, mistyped, out-of-range and unseen values of one feature.

    The checks come from the feature's reference profile (see `docs/reference-format.md`):

    * missing: `None` or a float NaN, for either kind of feature;
    * numeric feature: a `str`, `bool`, `list`, `dict` (anything that is not a real number) is
      a type error; a number below the profile `min` or above its `max` is out of range
      (±inf included, being beyond any finite bound);
    * categorical feature: a `list` or `dict` is a type error; any other value is compared as
      `str(value)` with the profile categories, and one not among them is unseen when the
      reference put no mass in `other` (a non-zero `other` means the reference already had a
      tail of rare categories, so a new one is not a surprise). The first 5 distinct unseen
      values are kept, as strings, in `unseen_examples`.

    Every rate is a fraction of all values seen (`n`), so the four counts plus the valid ones
    add up to `n`. Rates are None while `n == 0`.

    Parameters
    ----------
    profile
        A feature profile dict with `"kind"` equal to `"numeric"` (uses `min`, `max`) or
        `"categorical"` (uses `categories`, `other`).

    Examples
    --------
    >>> from tripwire.detectors.quality import FeatureQuality

    >>> weight = FeatureQuality({"kind": "numeric", "min": 1613.0, "max": 5140.0})
    >>> weight.update_many([2000, 3100.5, None, float("nan"), "heavy", 9000, 1500, True])
    >>> r = weight.result()
    >>> r["n"], r["missing_rate"], r["type_error_rate"], r["out_of_range_rate"]
    (8, 0.25, 0.25, 0.25)

    >>> origin = FeatureQuality({"kind": "categorical",
    ...                          "categories": {"USA": 0.625, "Japan": 0.2, "Europe": 0.175},
    ...                          "other": 0.0})
    >>> origin.update_many(["USA", "Japan", "Mars", None, "Mars", "Venus"])
    >>> r = origin.result()
    >>> r["unseen_rate"], r["unseen_examples"]
    (0.5, ['Mars', 'Venus'])

    References
    ----------
    [^1]: Eric Breck, Neoklis Polyzotis, Sudip Roy, Steven Euijong Whang and Martin Zinkevich.
    2019. Data Validation for Machine Learning. In Proceedings of Machine Learning and
    Systems (SysML / MLSys) 1.
    [^2]: Sebastian Schelter, Dustin Lange, Philipp Schmidt, Meltem Celikel, Felix Biessmann and
    Andreas Grafberger. 2018. Automating Large-Scale Data Quality Verification. Proceedings of
    the VLDB Endowment 11(12), 1781-1794.

    """

    def __init__(self, profile: dict[str, Any]) -> None:
        kind = profile.get("kind")
        if kind == "numeric":
            lo, hi = profile.get("min"), profile.get("max")
            # A reference with no observed values has no bounds; then nothing is out of range.
            self._lo = -math.inf if lo is None else float(lo)
            self._hi = math.inf if hi is None else float(hi)
            self._categories: frozenset[str] = frozenset()
            self._other = 0.0
        elif kind == "categorical":
            self._lo, self._hi = -math.inf, math.inf
            self._categories = frozenset(str(c) for c in (profile.get("categories") or {}))
            self._other = float(profile.get("other") or 0.0)
        else:
            raise ValueError(f"Feature profile kind must be 'numeric' or 'categorical', got {kind!r}")
        self.kind: str = kind
        self.reset()

    def reset(self) -> None:
        """Forget all counts (start a new window); the profile is kept."""
        self.n = 0
        self.missing = 0
        self.type_errors = 0
        self.out_of_range = 0
        self.unseen = 0
        self.unseen_examples: list[str] = []

    def update(self, value: Any) -> None:
        """Check one raw JSON value."""
        self.update_many((value,))

    def update_many(self, values: Iterable[Any], floats: np.ndarray | None = None) -> None:
        """Check a batch of raw JSON values (one window flush).

        ``floats``, optional, is ``values`` as float64 when the caller knows every value to be a
        plain ``int`` or ``float`` (it saves converting them again).
        """
        if not isinstance(values, (list, tuple)):
            values = list(values)
        if self.kind == "numeric":
            self._update_numeric(values, floats)
        else:
            self._update_categorical(values)

    def _update_numeric(self, values: list[Any] | tuple[Any, ...], floats: np.ndarray | None) -> None:
        if floats is None and values:
            floats = plain_floats(values)
        if floats is not None and len(floats):
            # The usual window, all plain numbers: counted with numpy, same counts as the loop below.
            if not (np.abs(floats) > _EXACT_INT).any():  # beyond, a float and an int may compare apart
                missing = int(np.count_nonzero(floats != floats))
                self._add_counted(len(values), missing, int(np.count_nonzero((floats < self._lo) | (floats > self._hi))))
                return
        # Exact `type(v) is ...` tests first: they are the fast path for JSON-decoded values and
        # keep bool (an int subclass) out of the numbers.
        lo, hi = self._lo, self._hi
        n = missing = type_errors = out_of_range = 0
        for v in values:
            n += 1
            t = type(v)
            if t is float or t is int:
                if v != v:
                    missing += 1
                elif v < lo or v > hi:
                    out_of_range += 1
            elif v is None:
                missing += 1
            elif t is bool or not isinstance(v, numbers.Real):
                type_errors += 1
            else:
                # numpy / Decimal / Fraction scalars that came in through a non-JSON path.
                f = float(v)
                if f != f:
                    missing += 1
                elif f < lo or f > hi:
                    out_of_range += 1
        self.n += n
        self.missing += missing
        self.type_errors += type_errors
        self.out_of_range += out_of_range

    def _add_counted(self, n: int, missing: int, out_of_range: int) -> None:
        self.n += n
        self.missing += missing
        self.out_of_range += out_of_range

    def _update_categorical(self, values: list[Any] | tuple[Any, ...]) -> None:
        categories = self._categories
        flag_unseen = self._other == 0.0
        examples = self.unseen_examples
        try:
            counts = tally(values)  # the distinct values in order of first appearance
        except TypeError:  # an unhashable value (a list, a dict): the loop below
            counts = None
        if counts is not None and set(map(type, counts)) <= _TEXT_OR_MISSING:
            # Strings (and None) only: counted per distinct value, which keeps the examples those of
            # the loop below. (Values of other types that compare equal, 1 == True, share a key: then
            # that key is no string and the loop counts them.)
            self.n += len(values)
            self.missing += counts.get(None, 0)
            if flag_unseen:
                for s, count in counts.items():
                    if s is not None and s not in categories:
                        self.unseen += count
                        if len(examples) < _MAX_EXAMPLES and s not in examples:
                            examples.append(s)
            return
        n = missing = type_errors = unseen = 0
        for v in values:
            n += 1
            if v is None:
                missing += 1
                continue
            t = type(v)
            if t is str:
                s = v
            elif t is list or t is dict or isinstance(v, (list, dict, tuple, set)):
                type_errors += 1
                continue
            elif isinstance(v, float) and v != v:
                missing += 1
                continue
            else:
                s = str(v)
            if s not in categories and flag_unseen:
                unseen += 1
                if len(examples) < _MAX_EXAMPLES and s not in examples:
                    examples.append(s)
        self.n += n
        self.missing += missing
        self.type_errors += type_errors
        self.unseen += unseen

    def result(self) -> dict[str, Any]:
        """Return counts as rates over all values seen since the last reset."""
        n = self.n

        def rate(count: int) -> float | None:
            return count / n if n else None

        return {
            "n": n,
            "missing_rate": rate(self.missing),
            "type_error_rate": rate(self.type_errors),
            "out_of_range_rate": rate(self.out_of_range),
            "unseen_rate": rate(self.unseen),
            "unseen_examples": list(self.unseen_examples),
        }

    def summary(self) -> dict[str, Any]:
        """The window's counts as mergeable plain data (no profile)."""
        return {"n": self.n, "missing": self.missing, "type_errors": self.type_errors,
                "out_of_range": self.out_of_range, "unseen": self.unseen, "unseen_examples": list(self.unseen_examples)}

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary`: counts add, examples are kept up to the usual few."""
        for name in ("n", "missing", "type_errors", "out_of_range", "unseen"):
            setattr(self, name, getattr(self, name) + int(summary[name]))
        for example in summary["unseen_examples"]:
            if len(self.unseen_examples) < _MAX_EXAMPLES and example not in self.unseen_examples:
                self.unseen_examples.append(str(example))

    def to_dict(self) -> dict[str, Any]:
        """Return the full state (checks and counts) as a JSON-serialisable dict."""
        # Infinite bounds are written as None because JSON has no infinity.
        return {
            "kind": self.kind,
            "min": None if math.isinf(self._lo) else self._lo,
            "max": None if math.isinf(self._hi) else self._hi,
            "categories": sorted(self._categories),
            "other": self._other,
            "n": self.n,
            "missing": self.missing,
            "type_errors": self.type_errors,
            "out_of_range": self.out_of_range,
            "unseen": self.unseen,
            "unseen_examples": list(self.unseen_examples),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureQuality:
        """Rebuild from `to_dict` output."""
        profile = {
            "kind": d["kind"],
            "min": d.get("min"),
            "max": d.get("max"),
            "categories": {c: None for c in d.get("categories", [])},
            "other": d.get("other", 0.0),
        }
        obj = cls(profile)
        obj.n = int(d["n"])
        obj.missing = int(d["missing"])
        obj.type_errors = int(d["type_errors"])
        obj.out_of_range = int(d["out_of_range"])
        obj.unseen = int(d["unseen"])
        obj.unseen_examples = [str(s) for s in d.get("unseen_examples", [])]
        return obj

    def __repr__(self) -> str:
        return f"FeatureQuality(kind={self.kind!r}, n={self.n})"


def check_numeric_columns(checks: Sequence[FeatureQuality], columns: Sequence[Sequence[Any]],
                          floats: np.ndarray) -> None:
    """``checks[i].update_many(columns[i], floats[i])`` for numeric checks, counted for all rows at once.

    ``floats`` is the 2-D float64 array of ``columns``, every value of which is a plain ``int`` or ``float``.

    >>> a, b = FeatureQuality({"kind": "numeric", "min": 0.0, "max": 1.0}), FeatureQuality({"kind": "numeric"})
    >>> check_numeric_columns([a, b], [(0.5, 2.0, float("nan")), (1, 2, 3)], np.array([[0.5, 2.0, np.nan], [1, 2, 3]]))
    >>> a.result()["missing_rate"], a.result()["out_of_range_rate"], b.result()["n"]
    (0.3333333333333333, 0.3333333333333333, 3)
    """
    if floats.shape[1] == 0:
        return
    lo = np.array([[check._lo] for check in checks])
    hi = np.array([[check._hi] for check in checks])
    exact = (~(np.abs(floats) > _EXACT_INT).any(axis=1)).tolist()
    missing = np.count_nonzero(floats != floats, axis=1).tolist()
    out_of_range = np.count_nonzero((floats < lo) | (floats > hi), axis=1).tolist()
    n = floats.shape[1]
    for i, check in enumerate(checks):
        if exact[i]:
            check._add_counted(n, missing[i], out_of_range[i])
        else:  # beyond 2**53 a float and an int may compare apart: the value-by-value count
            check.update_many(columns[i], floats[i])
