"""Split models across workers: which partitions of the input topic carry each model's records.

The partitioning contract puts all of a model's records on one partition. A producer with another
partitioner, a changed partition count or a label job keying by request id breaks it silently: the
model's predictions and labels sit in two engines (often on two workers) and never meet. Each
worker notes, per partition it consumes, the first record of every monitored model it finds there
(a *sighting*: model, partition, offset, event time; kept in the partition's checkpoint, so it is
the same after any restart) and lists its sightings in every utilization sample it publishes to
the metrics topic. Those samples are keyed by the app id, so one partition of the metrics topic
holds every worker's, and the one worker that owns it reads them all: a :class:`SplitModelDetector`
there raises ``split_model`` when a model is on more than one partition. No clock decides it, only
the sightings, which are a function of the input topic's contents; the alert's segment (the
partitions), window and id come from the sightings (same evidence, same ``alert_id``; a model found
on one more partition is a new alert), so the owner after a rebalance, which reads the next
samples, raises the very same alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from tripwire.alerts import Finding
from tripwire.config import Threshold
from tripwire.streams.publish import route

log = logging.getLogger("tripwire.worker")

# Two partitions or more is a split: critical, since the model's windows and label join are split.
SPLIT_THRESHOLD = Threshold(None, 2)


@dataclass(frozen=True, slots=True)
class Sighting:
    """The first record of ``model`` found on ``partition``: its offset and event time."""

    model: str
    partition: int
    offset: int
    ts: float

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "partition": self.partition, "offset": self.offset, "ts": self.ts}

    @classmethod
    def from_dict(cls, document: Any) -> Sighting | None:
        """The sighting in ``document``, or None when it is not one (a sample is untrusted input)."""
        if not isinstance(document, dict):
            return None
        model, partition, offset, ts = (document.get(k) for k in ("model", "partition", "offset", "ts"))
        if (type(model) is not str or not model or type(partition) is not int or partition < 0
                or type(offset) is not int or offset < 0 or type(ts) not in (int, float)):
            return None
        return cls(model, partition, offset, float(ts))  # type: ignore[arg-type]  # checked just above


def sight(sightings: dict[str, Sighting], partition: int, models: set[bytes], messages: list[Any]) -> None:
    """Note in ``sightings`` the first record of each of ``models`` on ``partition`` (kept in its checkpoint).

    ``messages`` are the partition's records in offset order. A record's model is its key when the
    key names one, else the ``model`` its value names (a label keyed by request id is still that
    model's record on this partition).
    """
    if not models:
        return  # only sharded models: they sit on every partition by design
    for message in messages:
        if len(sightings) == len(models):
            return  # every model already seen here: nothing left to learn from this partition
        model = message.key if message.key in models else None
        if model is not None and model.decode() in sightings:
            continue
        found, ts = route(message.value or b"")
        model = model or found
        if model in models and model.decode() not in sightings and ts is not None:
            sighting = Sighting(model.decode(), partition, message.offset, ts)
            sightings[sighting.model] = sighting
            log.info("partition %d: first record of model %s at offset %d", partition, sighting.model,
                     message.offset)


class SplitModelDetector:
    """Every worker's sightings merged; a finding per model once it is on two partitions or more.

    Examples
    --------
    >>> detector = SplitModelDetector("tripwire.events")
    >>> detector.observe([Sighting("credit", 2, 0, 1.0e9)])
    []
    >>> [finding] = detector.observe([Sighting("credit", 0, 7, 1.0e9 + 60)])
    >>> finding.signal, finding.segment, finding.evidence["first_offsets"]
    ('partitioning:credit', 'partitions:0,2', {'0': 7, '2': 0})
    >>> detector.observe([Sighting("credit", 0, 7, 1.0e9 + 60)])  # nothing new
    []
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.seen: dict[str, dict[int, Sighting]] = {}

    def observe(self, sightings: Iterable[Sighting]) -> list[Finding]:
        """Merge ``sightings``; a finding for each split model whose partitions changed."""
        changed: set[str] = set()
        for sighting in sightings:
            known = self.seen.setdefault(sighting.model, {})
            earlier = known.get(sighting.partition)
            # Two workers can report one partition (before and after a rebalance): the earliest offset is its first.
            if earlier is None or sighting.offset < earlier.offset:
                known[sighting.partition] = sighting
                changed.add(sighting.model)
        return [self.finding(model) for model in sorted(changed) if len(self.seen[model]) > 1]

    def finding(self, model: str) -> Finding:
        """The evidence, and a window that is a function of it: from the first sighting to the last."""
        sightings = [self.seen[model][p] for p in sorted(self.seen[model])]
        partitions = [s.partition for s in sightings]
        start, end = min(s.ts for s in sightings), max(s.ts for s in sightings)
        return Finding(
            model="*", kind="data_quality", signal=f"partitioning:{model}", detector="split_model",
            value=float(len(partitions)), threshold=SPLIT_THRESHOLD, window_start=start, window_end=end,
            n=len(partitions), segment="partitions:" + ",".join(map(str, partitions)),
            evidence={"model": model, "partitions": partitions,
                      "first_offsets": {str(s.partition): s.offset for s in sightings}},
            message=f"model {model} arrives on partitions {partitions} of {self.topic} (first offsets "
                    + ", ".join(f"{s.partition}:{s.offset}" for s in sightings)
                    + "): its windows and label join are split between engines (a producer with another "
                      "partitioner or key, or a changed partition count); key every record by its model")
