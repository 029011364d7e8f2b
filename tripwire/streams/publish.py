"""Put recorded events on the input topic the way a serving system would: keyed by model.

Keying by model is the partitioning contract of the worker: the default (murmur2) partitioner sends
all of a model's predictions, features and labels to one partition of the input topic, in order.
Each record's Kafka timestamp is its event time, so ``tripwire replay --from TS`` and the broker's
time index speak event time; a record that does not parse gets the event time of the record before
it. (Timestamps only place a range; the order the engine sees is each partition's log order.)
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Callable, Iterable

import orjson

from tripwire.events import ContractError, parse_ts
from tripwire.streams.topics import KafkaSettings, running

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
UNKEYED = b"*"  # records that name no model all go to one partition


def route(record: bytes) -> tuple[bytes, float | None]:
    """``(key, event time)`` of a record: its model, its ``ts`` if it parses."""
    try:
        obj = orjson.loads(record)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        model = obj.get("model")
        key = model.encode() if isinstance(model, str) and model else UNKEYED
        try:
            ts: float | None = parse_ts(obj.get("ts"))
        except ContractError:
            ts = None
        return key, ts
    match = _MODEL.search(record)
    return match.group(1) if match else UNKEYED, None


async def publish(settings: KafkaSettings, records: Iterable[bytes], *, topic: str | None = None,
                  rate: float = 0.0, linger_ms: int = 20,
                  key: Callable[[bytes, bytes], bytes] | None = None) -> dict[str, int]:
    """Produce ``records`` in order to the input topic (or ``topic``); counts per topic.

    ``rate``: records per second (0: as fast as the broker takes them). ``key(record, model)``: the
    key to send a record with instead of its model (a producer that breaks the partitioning contract).
    """
    from aiokafka import AIOKafkaProducer

    name = topic or settings.events
    producer = AIOKafkaProducer(**settings.client_kwargs(), acks="all", linger_ms=linger_ms,
                                max_batch_size=512 * 1024)
    counts: dict[str, int] = {}
    started = time.monotonic()
    last_ts: float | None = None
    async with running(producer):
        for index, record in enumerate(records):
            model, ts = route(record)
            ts = last_ts if ts is None else ts
            last_ts = ts
            await producer.send(name, record, key=model if key is None else key(record, model),
                                timestamp_ms=None if ts is None else round(ts * 1000))
            counts[name] = counts.get(name, 0) + 1
            if rate and index % 50 == 0:
                ahead = started + index / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    return counts
