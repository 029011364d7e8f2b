"""``tripwire tail``: the alerts topic, one readable line per alert, as they arrive."""

from __future__ import annotations

import time
from typing import Any, Callable

import orjson

from tripwire.streams.topics import KafkaSettings, partitions_for, running


def format_alert(alert: dict[str, Any]) -> str:
    if alert.get("type") == "reference_changed":
        return (f"{alert.get('ts', '-')}  reference changed  {alert['model']}: {alert.get('previous_reference')} -> "
                f"{alert.get('reference')} (closed {len(alert.get('closed_alerts') or [])} open alerts)")
    if alert.get("type") == "capacity":
        return f"{alert.get('ts', '-')}  capacity {alert.get('action', '?'):<10} {alert.get('message', '')}"
    return (f"{alert.get('ts', '-')}  {alert.get('status', '?'):<8} {alert.get('severity', '?'):<8} "
            f"{alert.get('kind', '?'):<21} {alert.get('model', '?'):<15} {alert.get('message', '')}  "
            f"[{str(alert.get('alert_id', ''))[:12]}]")


async def tail(settings: KafkaSettings, topic: str, *, from_beginning: bool = False, idle_exit: float | None = None,
               out: Callable[[str], None] = print, limit: int | None = None) -> int:
    """Print ``topic`` until interrupted (or ``idle_exit`` seconds without a record); returns the count."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    count = 0
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False)
    async with running(consumer):
        tps = [TopicPartition(topic, p) for p in await partitions_for(consumer, topic)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last = time.monotonic()
        while idle_exit is None or time.monotonic() - last < idle_exit:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    last = time.monotonic()
                    try:
                        line = format_alert(orjson.loads(message.value))
                    except (orjson.JSONDecodeError, TypeError, KeyError):
                        line = f"(not an alert) {message.value[:200]!r}"
                    out(line)
                    count += 1
                    if limit is not None and count >= limit:
                        return count
    return count
