"""The distinct values of a window column and their counts, counted once for every detector reading it.

A window close hands the same column (a tuple) to the feature's quality check and then to its
drift detector; both start from the counts of its distinct values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

_last: list[Any] = [None, None]  # [the tuple counted last, its counts]


def tally(values: Iterable[Any]) -> Counter[Any]:
    """``Counter(values)``; a tuple given twice in a row is counted once. Do not change the result.

    >>> column = ("web", "app", "web", None)
    >>> tally(column)
    Counter({'web': 2, 'app': 1, None: 1})
    >>> tally(column) is tally(column)
    True
    """
    if type(values) is not tuple:  # only a tuple is certain not to have changed since
        return Counter(values)
    if values is not _last[0]:  # (the reference held here keeps its id from being reused)
        _last[0], _last[1] = values, Counter(values)
    return _last[1]
