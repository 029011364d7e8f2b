"""Fixed-bin histograms for the statistics that need raw values, so per-partition windows merge.

A sharded model's windows are folded on many partitions and merged elsewhere (see
:mod:`tripwire.shard`): a percentile or a ROC AUC cannot be merged from its parts, but counts on
bins fixed in advance can. Latencies go on log-spaced bins (each about 0.7 % wide, from 1 µs to
about 30 hours); scores on ``SCORE_BINS`` equal bins of [0, 1].

Examples
--------
>>> bins = latency_bins(np.arange(1.0, 1001.0))  # numpy.percentile: p50 500.5, p99 990.01
>>> [round(p) for p in latency_percentiles(bins, [50.0, 99.0])]
[500, 990]
>>> binned_auc(*score_bins([0.9, 0.4, 0.6, 0.1], [True, True, False, False]))
0.75
"""

from __future__ import annotations

import bisect
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

LATENCY_LOW_MS = 1e-3  # latencies below this land in the first bin
LATENCY_BINS_PER_DECADE = 330  # bin width = 10 ** (1 / 330) - 1, about 0.7 %
LATENCY_DECADES = 11  # up to 1e8 ms
SCORE_BINS = 1000

_LATENCY_EDGES = np.logspace(math.log10(LATENCY_LOW_MS), math.log10(LATENCY_LOW_MS) + LATENCY_DECADES,
                             LATENCY_BINS_PER_DECADE * LATENCY_DECADES + 1)


def latency_bins(latencies: Iterable[float]) -> dict[str, int]:
    """Count finite latencies (ms) per log bin; sparse, as ``{"bin index": count}`` (JSON keys are strings)."""
    values = np.asarray(latencies if isinstance(latencies, np.ndarray) else list(latencies), dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    index = np.clip(np.searchsorted(_LATENCY_EDGES, values, side="right") - 1, 0, len(_LATENCY_EDGES) - 2)
    found, counts = np.unique(index, return_counts=True)
    return {str(int(i)): int(c) for i, c in zip(found, counts)}


def add_bins(into: dict[str, int], other: Mapping[str, int]) -> None:
    """Add sparse bin counts ``other`` into ``into``."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + int(count)


def latency_bin_width(value: float) -> float:
    """Width (ms) of the latency bin that holds ``value``: the precision of a percentile there."""
    i = min(max(bisect.bisect_right(_LATENCY_EDGES.tolist(), value) - 1, 0), len(_LATENCY_EDGES) - 2)
    return float(_LATENCY_EDGES[i + 1] - _LATENCY_EDGES[i])


def latency_percentiles(bins: Mapping[str, int], percentiles: Sequence[float]) -> list[float | None]:
    """Percentiles of binned latencies, interpolated linearly within the bin (off by less than its width)."""
    if not bins:
        return [None] * len(percentiles)
    order = sorted((int(k), c) for k, c in bins.items())
    index = np.array([i for i, _ in order])
    counts = np.array([c for _, c in order], dtype=float)
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    found: list[float | None] = []
    for q in percentiles:
        rank = q / 100.0 * total
        at = int(min(np.searchsorted(cumulative, rank, side="left"), len(order) - 1))
        below = cumulative[at] - counts[at]
        share = (rank - below) / counts[at] if counts[at] else 0.0
        lo, hi = _LATENCY_EDGES[index[at]], _LATENCY_EDGES[index[at] + 1]
        found.append(float(lo + min(max(share, 0.0), 1.0) * (hi - lo)))
    return found


def score_bins(scores: Sequence[float], is_positive: Sequence[bool]) -> tuple[list[int], list[int]]:
    """Counts of positives and of negatives per score bin (``SCORE_BINS`` equal bins of [0, 1])."""
    index = np.minimum((np.asarray(scores, dtype=float) * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
    positive = np.asarray(is_positive, dtype=bool)
    return (np.bincount(index[positive], minlength=SCORE_BINS).tolist(),
            np.bincount(index[~positive], minlength=SCORE_BINS).tolist())


def binned_auc(positives: Sequence[int], negatives: Sequence[int]) -> float | None:
    """ROC AUC from binned scores: the Mann-Whitney statistic with scores in one bin counted as ties.

    It differs from the exact AUC only through pairs whose scores share a bin; ``None`` unless
    both a positive and a negative are present.
    """
    pos = np.asarray(positives, dtype=np.int64)
    neg = np.asarray(negatives, dtype=np.int64)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if not (n_pos and n_neg):
        return None
    neg_below = np.concatenate(([0], np.cumsum(neg)[:-1]))
    twice_u = int((pos * (2 * neg_below + neg)).sum())
    return twice_u / (2 * n_pos * n_neg)
