"""River's change detectors as plain data (numbers and lists), and back.

A checkpoint must never carry code: pickle (or anything like it) read from a topic runs whatever
the writer put there. River's detectors only offer pickle, so this module exports the numbers that
make up their state and rebuilds a detector from them:

* ``PageHinkley`` keeps its state in Python attributes (a running mean and four sums).
* ``ADWIN`` keeps its window inside a compiled object (``river._river_rust.drift.AdaptiveWindowing``)
  whose only state API is ``__getstate__`` / ``__setstate__`` with a bincode image of its Rust
  struct. :func:`export_state` decodes that image into named numbers and lists;
  :func:`build_detector` checks them (types, ranges, the window width against its buckets) and
  encodes a fresh image from them. Bytes from a checkpoint never reach ``__setstate__`` (a
  malformed image makes the Rust side panic), only an image encoded here from checked numbers.

The layouts are those of the river release pinned in ``pyproject.toml``; :func:`export_state`
checks that re-encoding what it decoded gives river's bytes back, so a river whose layout moved
fails at the first checkpoint rather than writing a state it could not restore.
"""

from __future__ import annotations

import math
import struct
import sys
import types
from typing import Any

__all__ = ["StateError", "build_detector", "export_state", "river_detector", "river_drift", "METHODS"]

METHODS = ("adwin", "page_hinkley")


def river_detector(method: str, **params: Any) -> Any:
    """A new river detector of kind ``method`` (river.drift is imported on first use)."""
    drift = river_drift()
    return {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley}[method](**params)


def river_drift() -> Any:
    """``river.drift`` without its example datasets.

    The package's ``__init__`` imports ``river.drift.datasets``, which imports scikit-learn: two
    to five seconds of a replay's start on a busy machine, for data a monitor never reads. A
    placeholder stands in for that one submodule while ``river.drift`` imports, and is taken out
    again, so ``from river.drift import datasets`` still imports the real one when asked for.
    """
    if "river.drift" in sys.modules:
        return sys.modules["river.drift"]
    placeholder = types.ModuleType("river.drift.datasets")
    sys.modules["river.drift.datasets"] = placeholder
    try:
        from river import drift
    finally:
        if sys.modules.get("river.drift.datasets") is placeholder:
            del sys.modules["river.drift.datasets"]
    if getattr(drift, "datasets", None) is placeholder:
        del drift.datasets
    return drift

# ADWIN's Rust struct, in bincode's default encoding (little-endian, fixed-width integers, u64
# lengths): delta f64, clock i32, max_buckets u64, min_window_length f64, grace_period f64,
# total, variance, width, total_width f64, n_buckets, max_n_buckets, tick, n_detections i32,
# then the bucket list (u64 length; per bucket: max_size u64, current_idx u64, totals and
# variances as u64 length + f64s, each max_size + 1 long); then the Python binding's copy of the
# constructor arguments: delta f64, clock i32, max_buckets u64, min_window_length and grace_period i32.
_ADWIN_HEAD = struct.Struct("<diQdd dddd iiii Q".replace(" ", ""))
_ADWIN_TAIL = struct.Struct("<diQii")
_U64 = struct.Struct("<Q")
_ADWIN_FLOATS = ("total", "variance", "width", "total_width")
_ADWIN_COUNTERS = ("n_buckets", "max_n_buckets", "tick", "n_detections")
_ADWIN_ATTRIBUTES = {"_drift_detected", "delta", "clock", "max_buckets", "min_window_length", "grace_period",
                     "_helper"}
_PAGE_HINKLEY_SUMS = ("sum_increase", "sum_decrease", "min_increase", "max_decrease")
_PAGE_HINKLEY_ATTRIBUTES = {"_drift_detected", "min_instances", "delta", "threshold", "alpha", "mode", "_x_mean",
                            "_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease", "_test_drift"}
_I32_MAX = 2**31 - 1
_MAX_BUCKET_SLOTS = 1000  # ADWIN's max_buckets: river's default is 5; bounds what a checkpoint allocates
_MAX_BUCKET_ROWS = 63  # row i holds buckets of 2**i values
_ROUND_TRIPPED: set[str] = set()  # ADWIN parameter sets whose state survived the round trip


class StateError(ValueError):
    """A detector state that cannot be read; the message says which field and why."""


# -- plain numbers in and out ---------------------------------------------------------------------
def _float_out(x: float) -> float | str:
    """JSON has no infinity: Page-Hinkley starts its minimum at +inf."""
    return float(x) if math.isfinite(x) else repr(float(x))


def _float_in(value: Any, name: str, *, finite: bool = False) -> float:
    if isinstance(value, str) and value in ("inf", "-inf", "nan") and not finite:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise StateError(f"{name} must be finite, got {value!r}")
    return value


def _int_in(value: Any, name: str, low: int = 0, high: int = _I32_MAX) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StateError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _mapping(value: Any, name: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateError(f"{name} must be a mapping of plain data, got {type(value).__name__}")
    if set(value) != keys:
        raise StateError(f"{name} must have exactly the keys {sorted(keys)}, got {sorted(value)}")
    return value


# -- parameters -----------------------------------------------------------------------------------
def _checked_params(method: str, params: Any) -> dict[str, Any]:
    """The river constructor arguments, checked: they size what the Rust side allocates."""
    defaults = river_detector(method)._get_params()
    params = _mapping(params, f"{method} params", set(defaults))
    if method == "adwin":
        return {
            "delta": _float_in(params["delta"], "adwin delta", finite=True),
            "clock": _int_in(params["clock"], "adwin clock", low=1),
            "max_buckets": _int_in(params["max_buckets"], "adwin max_buckets", low=1, high=_MAX_BUCKET_SLOTS),
            "min_window_length": _int_in(params["min_window_length"], "adwin min_window_length"),
            "grace_period": _int_in(params["grace_period"], "adwin grace_period"),
        }
    if params["mode"] not in ("up", "down", "both"):
        raise StateError(f"page_hinkley mode must be 'up', 'down' or 'both', got {params['mode']!r}")
    return {
        "min_instances": _int_in(params["min_instances"], "page_hinkley min_instances"),
        "delta": _float_in(params["delta"], "page_hinkley delta", finite=True),
        "threshold": _float_in(params["threshold"], "page_hinkley threshold", finite=True),
        "alpha": _float_in(params["alpha"], "page_hinkley alpha", finite=True),
        "mode": params["mode"],
    }


# -- ADWIN ------------------------------------------------------------------------------------------
def _adwin_decode(blob: bytes, max_buckets: int) -> dict[str, Any]:
    head = _ADWIN_HEAD.unpack_from(blob, 0)
    offset = _ADWIN_HEAD.size
    state: dict[str, Any] = dict(zip(_ADWIN_FLOATS, head[5:9]))
    state.update(zip(_ADWIN_COUNTERS, head[9:13]))
    buckets = []
    for _ in range(head[13]):
        (max_size,) = _U64.unpack_from(blob, offset)
        (current,) = _U64.unpack_from(blob, offset + 8)
        offset += 16
        columns = []
        for _column in ("totals", "variances"):
            (length,) = _U64.unpack_from(blob, offset)
            offset += 8
            columns.append(struct.unpack_from(f"<{length}d", blob, offset))
            offset += 8 * length
        if max_size != max_buckets or current > len(columns[0]):
            raise StateError(f"ADWIN bucket of size {max_size} holding {current}: not river's layout")
        buckets.append({"totals": [_float_out(x) for x in columns[0][:current]],
                        "variances": [_float_out(x) for x in columns[1][:current]]})
    if offset + _ADWIN_TAIL.size != len(blob):
        raise StateError(f"ADWIN state has {len(blob) - offset} bytes past its buckets: not river's layout")
    state["buckets"] = buckets
    return state


def _adwin_encode(params: dict[str, Any], state: dict[str, Any]) -> bytes:
    """Bincode image of an AdaptiveWindowing holding ``state``; checks every field first."""
    state = _mapping(state, "adwin state", {*_ADWIN_FLOATS, *_ADWIN_COUNTERS, "buckets"})
    floats = [_float_in(state[name], f"adwin {name}", finite=True) for name in _ADWIN_FLOATS]
    counters = [_int_in(state[name], f"adwin {name}") for name in _ADWIN_COUNTERS]
    rows = state["buckets"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= _MAX_BUCKET_ROWS:
        raise StateError(f"adwin buckets must be a list of 1 to {_MAX_BUCKET_ROWS} rows")
    slots = params["max_buckets"] + 1
    parts = [_ADWIN_HEAD.pack(params["delta"], params["clock"], params["max_buckets"],
                              float(params["min_window_length"]), float(params["grace_period"]),
                              *floats, *counters, len(rows))]
    width = 0
    for index, row in enumerate(rows):
        row = _mapping(row, f"adwin bucket row {index}", {"totals", "variances"})
        totals, variances = row["totals"], row["variances"]
        if not (isinstance(totals, list) and isinstance(variances, list) and len(totals) == len(variances)
                <= params["max_buckets"]):
            raise StateError(f"adwin bucket row {index}: totals and variances must be lists of the same "
                             f"length, at most max_buckets={params['max_buckets']}")
        if index and index == len(rows) - 1 and not totals:
            raise StateError(f"adwin bucket row {index}: the last row of a window is never empty")
        width += len(totals) << index
        padding = [0.0] * (slots - len(totals))
        column_t = [_float_in(x, f"adwin bucket row {index} total", finite=True) for x in totals] + padding
        column_v = [_float_in(x, f"adwin bucket row {index} variance", finite=True) for x in variances] + padding
        parts.append(struct.pack(f"<QQQ{slots}dQ{slots}d", params["max_buckets"], len(totals),
                                 slots, *column_t, slots, *column_v))
    parts.append(_ADWIN_TAIL.pack(params["delta"], params["clock"], params["max_buckets"],
                                  params["min_window_length"], params["grace_period"]))
    if floats[_ADWIN_FLOATS.index("width")] != width:
        raise StateError(f"adwin width {floats[_ADWIN_FLOATS.index('width')]} does not match its buckets "
                         f"({width} values)")
    return b"".join(parts)


# -- both -------------------------------------------------------------------------------------------
def export_state(method: str, detector: Any) -> dict[str, Any]:
    """The state of river detector ``detector`` (of kind ``method``) as JSON-able numbers and lists.

    Raises
    ------
    RuntimeError
        If the installed river keeps its state in another layout than the one read here.
    """
    expected = _ADWIN_ATTRIBUTES if method == "adwin" else _PAGE_HINKLEY_ATTRIBUTES
    if set(vars(detector)) != expected:
        raise RuntimeError(f"river's {type(detector).__name__} holds {sorted(vars(detector))}, not the "
                           "attributes tripwire checkpoints: pin the river version of pyproject.toml")
    state: dict[str, Any]
    if method == "adwin":
        blob = detector._helper.__getstate__()
        params = _checked_params(method, detector._get_params())
        key = repr(params)
        try:
            state = _adwin_decode(blob, params["max_buckets"])
            # The layout cannot change within a process: the full round trip is checked until it
            # passed once on a window holding values, per parameter set (it costs a few ms).
            same = key in _ROUND_TRIPPED or _adwin_encode(params, state) == blob
        except (StateError, struct.error) as error:
            raise RuntimeError(f"river's ADWIN state layout is not the one tripwire reads: {error}") from error
        if not same:
            raise RuntimeError("river's ADWIN state does not survive tripwire's plain-data round trip: "
                               "pin the river version of pyproject.toml")
        if state["width"]:
            _ROUND_TRIPPED.add(key)
    else:
        mean = detector._x_mean
        from river import stats

        if type(mean) is not stats.Mean or set(vars(mean)) != {"n", "_mean"}:
            raise RuntimeError("river's PageHinkley running mean is not the one tripwire checkpoints")
        state = {"mean_n": mean.n, "mean": _float_out(mean._mean),
                 **{name: _float_out(getattr(detector, f"_{name}")) for name in _PAGE_HINKLEY_SUMS}}
    state["drift_detected"] = bool(detector._drift_detected)
    return state


def build_detector(method: str, params: Any, state: Any) -> Any:
    """A river detector of kind ``method`` continuing from :func:`export_state` output.

    Raises
    ------
    StateError
        If ``params`` or ``state`` is not what :func:`export_state` writes: wrong keys, types,
        ranges, or a window inconsistent with itself.
    """
    if method not in METHODS:
        raise StateError(f"unknown change method {method!r}; expected one of {sorted(METHODS)}")
    params = _checked_params(method, params)
    if not isinstance(state, dict):
        raise StateError(f"{method} state must be a mapping of plain data, got {type(state).__name__}"
                         + (" (an encoded blob: checkpoints hold no pickles, and none is ever loaded)"
                            if isinstance(state, (str, bytes)) else ""))
    state = dict(state)
    drift_detected = state.pop("drift_detected", None)
    if not isinstance(drift_detected, bool):
        raise StateError(f"{method} state needs drift_detected as true or false")
    detector = river_detector(method, **params)
    if method == "adwin":
        detector._helper.__setstate__(_adwin_encode(params, state))
    else:
        state = _mapping(state, "page_hinkley state", {"mean_n", "mean", *_PAGE_HINKLEY_SUMS})
        from river import stats

        detector._x_mean = stats.Mean()
        detector._x_mean.n = _float_in(state["mean_n"], "page_hinkley mean_n", finite=True)
        detector._x_mean._mean = _float_in(state["mean"], "page_hinkley mean")
        for name in _PAGE_HINKLEY_SUMS:
            setattr(detector, f"_{name}", _float_in(state[name], f"page_hinkley {name}"))
    detector._drift_detected = drift_detected
    return detector
