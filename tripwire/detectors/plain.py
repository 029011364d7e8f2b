"""Window columns of decoded JSON values as float64 arrays, when every value is a plain number.

A window close converts its columns (feature values, scores, latencies) to numpy once. Only
columns of plain ``int`` and ``float`` values (and ``None`` where a detector allows it) take that
path: a ``bool``, a ``str`` or a numpy scalar keeps the value-by-value path each detector defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["all_plain_numbers", "as_floats", "plain_floats"]

_PLAIN = (float, int)
_PLAIN_OR_NONE = (float, int, type(None))


def all_plain_numbers(values: Sequence[Any], none_too: bool = False) -> bool:
    """Whether every value is an ``int`` or a ``float`` (or ``None``, with ``none_too``); not a subclass.

    >>> all_plain_numbers((1, 2.5)), all_plain_numbers((1.0, True)), all_plain_numbers((1.0, None), none_too=True)
    (True, False, True)
    """
    types = list(map(type, values))  # counted by identity (list.count): cheaper than a set of them
    if not types:
        return True
    allowed = _PLAIN_OR_NONE if none_too else _PLAIN
    first = types[0]
    if first not in allowed:
        return False
    same = types.count(first)
    return same == len(types) or same + sum(types.count(t) for t in allowed if t is not first) == len(types)


def as_floats(columns: Sequence[Sequence[Any]], length: int) -> np.ndarray:
    """Columns of plain numbers (``None`` becomes NaN), each ``length`` long, as one float64 row each.

    np.fromiter skips np.array's type discovery; the floats are the same (``float(value)``).

    >>> as_floats([(1, 2.5), (None, 4.0)], 2).tolist()
    [[1.0, 2.5], [nan, 4.0]]
    """
    floats = np.empty((len(columns), length))
    for row, column in zip(floats, columns):  # (a column at a time: cheaper than one chained iterator)
        row[:] = np.fromiter(column, dtype=np.float64, count=length)
    return floats


def plain_floats(values: Sequence[Any], none_too: bool = False) -> np.ndarray | None:
    """``values`` as float64 when :func:`all_plain_numbers`, else None.

    >>> plain_floats([3, 0.5]).tolist(), plain_floats(["3"])
    ([3.0, 0.5], None)
    """
    return np.fromiter(values, dtype=np.float64, count=len(values)) if all_plain_numbers(values, none_too) else None
