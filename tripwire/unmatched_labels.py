"""Labels that never meet a prediction: one model's share of labels that expired unjoined, judged in windows.

Labels that never meet a prediction are those of a model whose labels land on another partition
than its predictions (another key or partitioner), or carry other request ids.
"""

from __future__ import annotations

from typing import Any

from tripwire.alerts import Finding
from tripwire.config import ModelConfig
from tripwire.findings import UNATTRIBUTED
from tripwire.join import LabelJoin


class UnmatchedLabels:
    """Every ``every`` labels: the share of the labels settled since the last window (joined to a
    prediction, or expired after the TTL) that expired without ever meeting one.

    A window is judged once ``min_samples`` labels were settled in it. Counted in event time on
    this model's own events, so replay and worker judge the same windows.
    """

    def __init__(self, config: ModelConfig, every: int) -> None:
        self.config = config
        self.every = every
        # Labels since the last check, the join's joined and expired-label counts when the open
        # window began, and its start.
        self.window: list[Any] = [0, 0, 0, None]

    def on_label(self, join: LabelJoin, ts: float) -> Finding | None:
        """Count a label at ``ts`` (``join``: the model's label join); the finding of a window judged now, if any."""
        window = self.window
        if window[3] is None:
            window[3] = ts
        window[0] += 1
        if window[0] < self.every:
            return None
        window[0] = 0
        join.expire(ts)  # a partition holding only this model's labels never reaches the prediction path's expiry
        joined = join.joined - window[1]
        unmatched = join.expired_labels - window[2]
        settled = joined + unmatched
        if settled < self.config.min_samples:
            return None
        start = window[3]
        self.window = [0, join.joined, join.expired_labels, ts]
        return unmatched_label_finding(self.config, unmatched, joined, join.ttl, start, ts)

    def judges_next(self) -> bool:
        """Whether the next label's :meth:`on_label` expires the join and reads its counts."""
        return self.window[0] + 1 >= self.every

    def to_list(self) -> list[Any]:
        return list(self.window)

    def restore(self, window: list[Any] | None, join: LabelJoin) -> None:
        """Continue from :meth:`to_list` output (None: a checkpoint from before this rule starts afresh)."""
        fresh: list[Any] = [0, join.joined, join.expired_labels, None]
        since, joined, expired, start = window or fresh
        self.window = [int(since), int(joined), int(expired), None if start is None else float(start)]


def unmatched_label_finding(config: ModelConfig, unmatched: int, joined: int, ttl: float, start: float,
                            ts: float) -> Finding:
    """The share of a model's settled labels that expired after ``ttl`` seconds without meeting a prediction."""
    name = config.name
    settled = joined + unmatched
    rate = unmatched / settled
    return Finding(
        model=UNATTRIBUTED, kind="data_quality", signal=f"labels:{name}", detector="unmatched_label_rate",
        value=rate, threshold=config.threshold("unmatched_label_rate", "labels"), window_start=start,
        window_end=ts, n=settled,
        evidence={"model": name, "labels_unmatched": unmatched, "labels_joined": joined, "label_ttl_seconds": ttl},
        message=f"{unmatched} of {settled} labels of {name} expired after {ttl:g} s without meeting "
                f"a prediction ({rate:.0%}): are they keyed like its predictions (same partition), with the "
                "same request ids?",
    )
