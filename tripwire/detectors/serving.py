"""Serving health of one window: latency percentiles and throughput in event time."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tripwire.detectors.histogram import add_bins, latency_bins, latency_percentiles
from tripwire.detectors.plain import plain_floats

__all__ = ["ServingWindow", "linear_percentiles"]


def linear_percentiles(values: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, percents)`` (linear interpolation) as floats, the same floats, for a fraction of its cost.

    A window has a thousand latencies: numpy's percentile spends most of its time on checks and
    dispatch. This sorts once and interpolates each percentile with numpy's arithmetic, step for
    step (index ``(n - 1) * q``, ``_lerp`` from the nearer end). Values that are not all finite, or
    have a negative one (-0.0 among them, whose place among equal zeros numpy's partition decides),
    take numpy's path.

    >>> values = np.array([3.0, 1.0, 2.0, 10.0])
    >>> linear_percentiles(values, (50.0, 95.0)) == np.percentile(values, [50.0, 95.0]).tolist()
    True
    """
    ordered = np.sort(values).tolist()
    if not ordered or not math.isfinite(ordered[-1]) or np.signbit(values).any():  # (a NaN sorts last)
        return [float(p) for p in np.percentile(values, list(percents))]
    last = len(ordered) - 1
    out = []
    for percent in percents:
        virtual = last * (percent / 100)
        if virtual >= last:
            below = above = last  # (numpy's index -1, and its gamma, give this element whatever the gamma)
            gamma = 0.0
        else:  # (percents are never below 0)
            below = math.floor(virtual)
            above, gamma = below + 1, virtual - below
        a, b = ordered[below], ordered[above]
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return out


class ServingWindow:
    """Latency percentiles and throughput of the requests in one window.

    Every update counts as one served request. Its latency is optional: a None, NaN or infinite latency
    still counts towards throughput but not towards the percentiles. Throughput is measured in
    event time (the timestamps carried by the records), never the wall clock, so replaying a
    stream gives the same numbers.

    `result()` returns

    * `n`: requests counted;
    * `latency_p50`, `latency_p95`, `latency_p99`: percentiles of the known latencies, computed
      as `numpy.percentile` with linear interpolation (Hyndman & Fan type 7); None when no
      latency is known;
    * `throughput_per_s`: `n / (last event time - first event time)`; None when that span is 0
      (fewer than two distinct timestamps).

    Examples
    --------
    >>> from tripwire.detectors.serving import ServingWindow

    >>> window = ServingWindow()
    >>> for i, latency in enumerate([12.0, 15.0, None, 11.0, 40.0]):
    ...     window.update(latency, ts=1_700_000_000.0 + i * 0.5)
    >>> r = window.result()
    >>> r["n"], r["latency_p50"], round(r["latency_p95"], 2), r["throughput_per_s"]
    (5, 13.5, 36.25, 2.5)

    A batch whose records span event times 1_700_000_002.0 to 1_700_000_004.0:

    >>> window.update_many([9.0, 10.0, 30.0], ts_first=1_700_000_002.0, ts_last=1_700_000_004.0)
    >>> window.result()["n"], window.result()["throughput_per_s"]
    (8, 2.0)

    References
    ----------
    [^1]: Rob J. Hyndman and Yanan Fan. 1996. Sample Quantiles in Statistical Packages.
    The American Statistician 50(4), 361-365.
    [^2]: Betsy Beyer, Chris Jones, Jennifer Petoff and Niall Richard Murphy (eds.). 2016.
    Site Reliability Engineering, chapter 6: Monitoring Distributed Systems (the four golden
    signals). O'Reilly Media.

    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the window's requests (start a new window)."""
        self.n = 0
        self._latency_batches: list[np.ndarray] = []  # the finite latencies, in arrival order
        self.ts_min: float | None = None
        self.ts_max: float | None = None
        self._bins: dict[str, int] | None = None  # a merged window's latencies, binned (see merge)

    @property
    def latencies(self) -> list[float]:
        """The window's finite latencies (ms), in arrival order."""
        return self._latency_array().tolist()

    def _latency_array(self) -> np.ndarray:
        batches = self._latency_batches
        if len(batches) == 1:
            return batches[0]
        return np.concatenate(batches) if batches else np.empty(0)

    def _observe_time(self, ts_first: float, ts_last: float) -> None:
        if not (math.isfinite(ts_first) and math.isfinite(ts_last)):
            raise ValueError(f"Event times must be finite, got {ts_first!r}, {ts_last!r}")
        if ts_first > ts_last:
            raise ValueError(f"ts_first ({ts_first}) is after ts_last ({ts_last})")
        # min / max rather than first / last: records may arrive out of event-time order.
        if self.ts_min is None or ts_first < self.ts_min:
            self.ts_min = ts_first
        if self.ts_max is None or ts_last > self.ts_max:
            self.ts_max = ts_last

    def update(self, latency_ms: float | None, ts: float) -> None:
        """Count one request served at event time `ts` (epoch seconds)."""
        ts = float(ts)
        self._observe_time(ts, ts)
        self.n += 1
        if latency_ms is not None:
            latency = float(latency_ms)
            if math.isfinite(latency):
                self._latency_batches.append(np.array([latency]))

    def update_many(
        self, latencies: Iterable[float | None], ts_first: float, ts_last: float
    ) -> None:
        """Count a batch of requests whose event times lie in `[ts_first, ts_last]`."""
        batch = list(latencies)
        if not batch:
            return
        self._observe_time(float(ts_first), float(ts_last))
        self.n += len(batch)
        floats = plain_floats(batch, none_too=True)  # the usual batch: converted by numpy, None -> NaN
        if floats is not None:
            self._latency_batches.append(floats[np.isfinite(floats)])
            return
        known = []
        for latency_ms in batch:
            if latency_ms is not None:
                latency = float(latency_ms)
                if math.isfinite(latency):
                    known.append(latency)
        self._latency_batches.append(np.array(known, dtype=np.float64))

    def result(self) -> dict[str, Any]:
        """Return latency percentiles and throughput of the window."""
        p50 = p95 = p99 = None
        if self._bins:
            p50, p95, p99 = latency_percentiles(self._bins, [50.0, 95.0, 99.0])
        elif (latencies := self._latency_array()).size:
            # (percentiles depend on the values only, not on their order across batches)
            p50, p95, p99 = linear_percentiles(latencies, (50.0, 95.0, 99.0))
        throughput = None
        if self.ts_min is not None and self.ts_max is not None and self.ts_max > self.ts_min:
            throughput = self.n / (self.ts_max - self.ts_min)
        return {
            "n": self.n,
            "latency_p50": p50,
            "latency_p95": p95,
            "latency_p99": p99,
            "throughput_per_s": throughput,
        }

    def summary(self) -> dict[str, Any]:
        """The window as mergeable plain data: requests, event-time span, latencies on fixed log bins."""
        return {"n": self.n, "ts_min": self.ts_min, "ts_max": self.ts_max, "bins": latency_bins(self._latency_array())}

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary`; from then on the percentiles are the binned ones."""
        if self._latency_array().size:
            raise ValueError("a window holding raw latencies cannot take merged ones")
        if summary["n"]:
            self._observe_time(float(summary["ts_min"]), float(summary["ts_max"]))
            self.n += int(summary["n"])
        if self._bins is None:
            self._bins = {}
        add_bins(self._bins, summary["bins"])

    def to_dict(self) -> dict[str, Any]:
        """Return the full state as a JSON-serialisable dict."""
        return {
            "n": self.n,
            "latencies": list(self.latencies),
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingWindow:
        """Rebuild from `to_dict` output."""
        obj = cls()
        obj.n = int(d["n"])
        obj._latency_batches = [np.array([float(x) for x in d.get("latencies", [])], dtype=np.float64)]
        obj.ts_min = None if d.get("ts_min") is None else float(d["ts_min"])
        obj.ts_max = None if d.get("ts_max") is None else float(d["ts_max"])
        return obj

    def __repr__(self) -> str:
        return f"ServingWindow(n={self.n}, latencies={self._latency_array().size})"
