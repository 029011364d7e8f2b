"""Change detection on a univariate stream (error indicator, residual, score ...)."""

from __future__ import annotations

import math
from typing import Any

import river

from tripwire.detectors.river_state import METHODS as _METHODS
from tripwire.detectors.river_state import StateError, build_detector, export_state, river_detector

__all__ = ["ChangeDetector"]


class ChangeDetector:
    """Alarm when the distribution of a univariate stream changes.

    Thin, serialisable wrapper around river's ADWIN and Page-Hinkley detectors. Alarms are
    exactly those of the river detector: `update` returns True on the step where river sets
    `drift_detected`. The wrapper adds step / alarm counters and a JSON-friendly state so a
    monitor can checkpoint and resume mid-stream.

    Parameters
    ----------
    method
        `"adwin"` (river.drift.ADWIN) or `"page_hinkley"` (river.drift.PageHinkley).
    params
        Keyword arguments passed unchanged to the river detector; anything omitted takes
        river's default.

    Attributes
    ----------
    n
        Number of values seen.
    detections
        Number of alarms raised.
    last_detection
        0-based index of the step of the latest alarm, or None.

    Notes
    -----
    `to_dict` stores the river detector's state as plain numbers and lists (see
    :mod:`tripwire.detectors.river_state`), never a pickle, and `from_dict` rebuilds the river
    detector from those numbers after checking them: a checkpoint read from a topic cannot run
    code. The state is tied to the river version that wrote it (recorded under
    `"river_version"`); `from_dict` refuses a state written by another river.

    Examples
    --------
    >>> import random
    >>> from tripwire.detectors.change import ChangeDetector

    >>> rng = random.Random(12345)
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)

    >>> detector = ChangeDetector("page_hinkley")
    >>> for i, x in enumerate(stream):
    ...     if detector.update(x):
    ...         print(f"Change detected at index {i}")
    Change detected at index 1006

    Checkpoint and resume:

    >>> detector = ChangeDetector("adwin", delta=0.002)
    >>> for x in stream[:1000]:
    ...     _ = detector.update(x)
    >>> state = detector.to_dict()
    >>> state["method"], state["params"]["delta"], state["n"]
    ('adwin', 0.002, 1000)
    >>> restored = ChangeDetector.from_dict(state)
    >>> [i for i, x in enumerate(stream[1000:], 1000) if restored.update(x)]
    [1023]

    References
    ----------
    [^1]: Albert Bifet and Ricard Gavaldà. 2007. Learning from time-changing data with
    adaptive windowing. In Proceedings of the 2007 SIAM International Conference on Data
    Mining, 443-448.
    [^2]: E. S. Page. 1954. Continuous Inspection Schemes. Biometrika 41, 1/2, 100-115.
    [^3]: Jacob Montiel et al. 2021. River: machine learning for streaming data in Python.
    Journal of Machine Learning Research 22(110), 1-8.

    """

    def __init__(self, method: str = "adwin", **params: Any) -> None:
        if method not in _METHODS:
            raise ValueError(f"Unknown method {method!r}; expected one of {sorted(_METHODS)}")
        self.method = method
        self._params = params
        # With river's defaults the detector is made on first use (importing river.drift takes
        # seconds, and a short replay may never need it); given parameters are checked at once.
        self._river: Any = river_detector(method, **params) if params else None
        self.n = 0
        self.detections = 0
        self.last_detection: int | None = None

    @property
    def _detector(self) -> Any:
        if self._river is None:
            self._river = river_detector(self.method, **self._params)
        return self._river

    @property
    def params(self) -> dict[str, Any]:
        """All river parameters in effect, defaults included."""
        return dict(self._detector._get_params())

    @property
    def drift_detected(self) -> bool:
        """Whether the latest `update` raised an alarm."""
        return bool(self._detector.drift_detected)

    def update(self, x: float) -> bool:
        """Feed one value; return True if this value triggers an alarm.

        Parameters
        ----------
        x
            A finite number (bools are accepted as 0 / 1).

        Raises
        ------
        ValueError
            If `x` is NaN or infinite: one such value would poison the running means of both
            detectors for the rest of the stream, so the caller must filter them.

        """
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"ChangeDetector.update needs a finite value, got {x!r}")
        detector = self._river if self._river is not None else self._detector
        if self.method == "adwin" and not detector._drift_detected:
            # river's ADWIN.update without its Python frame: the step of its (Rust) window, which is
            # all it does unless the last step alarmed (then it starts a new window first). The
            # river version is pinned (see to_dict), and tests hold the alarms to river's own.
            drift = detector._drift_detected = detector._helper.update(x)
        else:
            detector.update(x)
            drift = detector.drift_detected
        self.n += 1
        if drift:
            self.detections += 1
            self.last_detection = self.n - 1
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """Return the full state as a JSON-serialisable dict of numbers, strings and lists."""
        return {
            "method": self.method,
            "params": self.params,
            "n": self.n,
            "detections": self.detections,
            "last_detection": self.last_detection,
            "river_version": river.__version__,
            "state": export_state(self.method, self._detector),
        }

    @classmethod
    def from_dict(cls, d: Any) -> ChangeDetector:
        """Rebuild a detector from `to_dict` output; it continues exactly where it stopped.

        Raises
        ------
        ValueError
            With the reason, if `d` is not `to_dict` output of this river version: the state is
            checked field by field, and nothing in it is unpickled or executed.

        """
        if not isinstance(d, dict):
            raise StateError(f"a change detector state must be a mapping, got {type(d).__name__}")
        missing = {"method", "params", "n", "detections", "river_version", "state"} - set(d)
        if missing:
            raise StateError(f"change detector state lacks {sorted(missing)}")
        if d["river_version"] != river.__version__:
            raise StateError(f"change detector state written with river {d['river_version']!r}; this process "
                             f"runs river {river.__version__}, whose detector internals may differ")
        obj = cls.__new__(cls)
        obj.method = d["method"]
        obj._params = {}
        obj._river = build_detector(d["method"], d["params"], d["state"])
        obj.n = _count(d["n"], "n")
        obj.detections = _count(d["detections"], "detections")
        last = d.get("last_detection")
        obj.last_detection = None if last is None else _count(last, "last_detection")
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"ChangeDetector({self.method!r}, {params}; n={self.n}, detections={self.detections})"


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"change detector {name} must be a non-negative integer, got {value!r}")
    return value
