"""Split models: sightings merged from every worker give one alert per partition set, whoever raises it."""

from __future__ import annotations

import itertools

import pytest

from tripwire import demo
from tripwire.alerts import AlertPolicy, encode_alert
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.streams.partition import PartitionRunner, decode_checkpoint
from tripwire.streams.sightings import Sighting, SplitModelDetector

T0 = 1.79e9
SIGHTINGS = [Sighting("credit", 2, 0, T0), Sighting("credit", 3, 0, T0 + 70.25), Sighting("triage", 0, 5, T0 + 1)]


def alerts_of(batches: list[list[Sighting]]) -> list[bytes]:
    """What one worker publishes when the samples bring ``batches`` in this order (as the worker evaluates)."""
    detector, policy = SplitModelDetector("tripwire.events"), AlertPolicy(min_samples=1)
    found = []
    for batch in batches:
        for finding in detector.observe(batch):
            alert = policy.evaluate(finding, model_version=None, reference=None, ts=finding.window_end)
            if alert is not None:
                found.append(encode_alert(alert))
    return found


def test_the_same_sightings_in_any_order_or_grouping_give_the_same_alert_bytes():
    outcomes = set()
    for order in itertools.permutations(SIGHTINGS):
        outcomes.add(tuple(alerts_of([[s] for s in order])))  # one sighting per sample
        outcomes.add(tuple(alerts_of([list(order)])))  # all in one sample
        outcomes.add(tuple(alerts_of([list(order), list(order)])))  # repeated by every later sample
    [alerts] = outcomes
    assert len(alerts) == 1  # triage is on one partition only
    assert b'"segment":"partitions:2,3"' in alerts[0] and b'"window":{"end":"2026-09-21T' in alerts[0]


def test_a_partition_reported_by_two_workers_keeps_its_earliest_offset_and_a_new_partition_is_a_new_alert():
    detector = SplitModelDetector("tripwire.events")
    assert detector.observe([Sighting("credit", 2, 40, T0 + 5)]) == []
    assert detector.observe([Sighting("credit", 2, 3, T0)]) == []  # the earlier owner's first offset wins
    [finding] = detector.observe([Sighting("credit", 0, 9, T0 + 9)])
    assert finding.evidence == {"model": "credit", "partitions": [0, 2], "first_offsets": {"0": 9, "2": 3}}
    [wider] = detector.observe([Sighting("credit", 1, 0, T0 + 20)])
    assert wider.segment == "partitions:0,1,2" and wider.value == 3.0


@pytest.mark.parametrize("bad", [{"model": "credit", "partition": -1, "offset": 0, "ts": T0},
                                 {"model": "", "partition": 0, "offset": 0, "ts": T0},
                                 {"model": "credit", "partition": 0, "offset": "0", "ts": T0}, ["credit", 0, 0, T0]])
def test_a_sighting_that_is_not_one_is_ignored_in_a_sample_and_refused_in_a_checkpoint(bad, demo_references):
    assert Sighting.from_dict(bad) is None
    runner = PartitionRunner(0, "tripwire.events", Engine(parse_config(demo.demo_config()), demo_references))
    runner.sightings = {"credit": Sighting("credit", 0, 7, T0)}
    blob, _offset = runner.checkpoint()
    restored = PartitionRunner(0, "tripwire.events", Engine(parse_config(demo.demo_config()), demo_references))
    restored.restore(decode_checkpoint(blob))
    assert restored.sightings == runner.sightings  # a restart reports the same first offset
    document = decode_checkpoint(blob)
    document["sightings"].append(bad)
    with pytest.raises(ValueError, match="sightings"):
        PartitionRunner(0, "tripwire.events", Engine(parse_config(demo.demo_config()), demo_references)
                        ).restore(document)
