"""Arguments whose event the engine surely accepts, recognised from the Python values alone.

The client must never send what the engine rejects; its reference check encodes the record as it
will travel and runs :func:`tripwire.events.decode` on the bytes (a third of a call's cost). Most
calls pass plain values — a non-empty ``str`` model and request id, a finite ``float`` (or numpy
``float64``), a 64-bit ``int``, a ``bool`` or a ``str`` prediction, ``dict`` features — whose
verdict is known without decoding: once ``orjson`` has encoded such a record (which it refuses
for a value JSON cannot hold, exactly as on the reference path), ``decode`` accepts it with the
same values. Every check below only ever says "surely accepted"; anything else (a NaN or an
infinity, which JSON turns into ``null``; a huge integer; other numpy types; a ``datetime`` or
string ``ts``; subclasses) takes the reference check, so a rejection still carries the engine's
reason. ``tests/test_client_contract.py`` checks with Hypothesis that the two paths agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOATS = (float, np.float64)  # exact types: orjson writes both as the shortest repr of the double
_INF = float("inf")  # compared with, not subtracted: numpy warns on inf - inf
_INT64 = (-(2**63), 2**63 - 1)  # orjson writes up to 64 bits; decode reads beyond 63 as a float
# Epoch seconds the contract's ISO form covers (years 1970-9999); outside, the reference path words it.
_TS_RANGE = (0.0, 253402300799.0)


def text(value: Any) -> bool:
    """A non-empty ``str``: the contract's ``model`` and ``request_id``."""
    return type(value) is str and value != ""


def scalar(value: Any) -> bool:
    """A ``prediction`` or ``label`` the engine keeps as it is."""
    kind = type(value)
    if kind is float or kind is np.float64:
        return -_INF < value < _INF  # finite: NaN and infinities travel as null, which is refused
    if kind is int:
        return _INT64[0] <= value <= _INT64[1]
    return kind is str or kind is bool


def probability(value: Any) -> bool:
    """A ``score`` (or one of ``scores``) in [0, 1]; ``bool`` is not a number to the engine."""
    kind = type(value)
    return (kind is float or kind is np.float64 or kind is int) and 0.0 <= value <= 1.0


def probabilities(value: Any) -> bool:
    return type(value) is dict and all(map(probability, value.values()))


def latency(value: Any) -> bool:
    """A finite, non-negative ``latency_ms``."""
    kind = type(value)
    if kind is float or kind is np.float64:
        return 0.0 <= value < _INF
    return kind is int and 0 <= value <= _INT64[1]


def optional_text(value: Any) -> bool:
    """``model_version``: absent or a ``str``."""
    return value is None or type(value) is str


def optional_object(value: Any) -> bool:
    """``features`` / ``attributes``: absent or a ``dict`` (whatever orjson encodes in it, the engine takes)."""
    return value is None or type(value) is dict


def timestamp(value: Any) -> bool:
    """``ts``: now (``None``) or epoch seconds in years 1970-9999."""
    if value is None:
        return True
    kind = type(value)
    return (kind is float or kind is int) and _TS_RANGE[0] <= value <= _TS_RANGE[1]


def prediction(model: Any, request_id: Any, value: Any, ts: Any, features: Any, latency_ms: Any, model_version: Any,
               attributes: Any, score: Any, scores: Any) -> bool:
    """Every argument of ``log_prediction`` at once, the usual ones checked inline.

    The same checks as the functions above; inline because on the cache a serving process leaves
    between two predictions, each Python call costs a microsecond or more.
    """
    kind = type(value)
    return (type(model) is str and model != "" and type(request_id) is str and request_id != ""
            and ((kind is float or kind is np.float64) and -_INF < value < _INF or scalar(value))
            and (ts is None or timestamp(ts))
            and (features is None or type(features) is dict)
            and (latency_ms is None or type(latency_ms) is float and 0.0 <= latency_ms < _INF or latency(latency_ms))
            and (model_version is None or type(model_version) is str)
            and (attributes is None or type(attributes) is dict)
            and (score is None or probability(score))
            and (scores is None or probabilities(scores)))
