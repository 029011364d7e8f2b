"""Replay a historical range of one or more topics through the engine: backtests on Kafka.

Plain aiokafka, no consumer group and no commits: the reader assigns every partition, seeks to the
start of the range (an offset, or a time through the broker's time index), reads up to the end
offsets it saw when it started, and merges the partitions in a deterministic order: by event time,
then partition, then topic, then offset (see :mod:`.merge`). Each partition's own order is kept,
so every model's events reach the engine exactly as ``tripwire replay FILE`` would feed them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Callable

from tripwire.engine import Engine
from tripwire.events import Rejection, decode, parse_ts
from tripwire.replay import Summary
from tripwire.streams.merge import Merge
from tripwire.streams.topics import KafkaSettings, partitions_for, running

AlertSink = Callable[[dict[str, Any], dict[str, Any]], None]
RejectSink = Callable[[Rejection, bytes, dict[str, Any]], None]
BUFFER_PER_PARTITION = 50_000


def parse_position(text: str | None) -> tuple[str, int] | None:
    """``--from`` / ``--to``: an offset (every partition) or an ISO 8601 time (epoch ms)."""
    if text is None:
        return None
    if text.strip().isdigit():
        return ("offset", int(text))
    try:
        return ("time", round(parse_ts(text) * 1000))
    except Exception:
        raise ValueError(f"{text!r} is neither an offset nor an ISO 8601 time (e.g. 2026-11-28T05:00:00Z)") from None


async def _offsets(consumer: Any, tps: list[Any], position: tuple[str, int] | None,
                   default: dict[Any, int], end: dict[Any, int]) -> dict[Any, int]:
    if position is None:
        return dict(default)
    kind, value = position
    if kind == "offset":
        return {tp: value for tp in tps}
    found = await consumer.offsets_for_times({tp: value for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}


async def replay_topics(settings: KafkaSettings, topics: list[str], engine_for: Callable[[int], Engine], *,
                        start: tuple[str, int] | None = None, end: tuple[str, int] | None = None,
                        on_alert: AlertSink, on_reject: RejectSink | None = None) -> Summary:
    """Read ``[start, end)`` of ``topics`` and run it through ``engine_for(partition)``.

    One engine for every partition (``lambda p: engine``) is a backtest of the whole stream, as
    ``tripwire replay FILE``; an engine per partition is exactly what the workers computed.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    started = time.perf_counter()
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    records = alerts = 0
    engines: dict[int, Engine] = {}
    async with running(consumer):
        tps = [TopicPartition(t, p) for t in topics for p in await partitions_for(consumer, t)]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        finish = await consumer.end_offsets(tps)
        first = await _offsets(consumer, tps, start, begin, finish)
        stop = await _offsets(consumer, tps, end, finish, finish)
        rank = {t: i for i, t in enumerate(topics)}
        merge = Merge(sorted(tps, key=lambda tp: (tp.partition, rank[tp.topic])))
        done: set[Any] = set()
        paused: set[Any] = set()
        for tp in tps:
            stop[tp] = min(stop[tp], finish[tp])
            first[tp] = max(begin[tp], min(first[tp], stop[tp]))
            if first[tp] >= stop[tp]:
                done.add(tp)
            else:
                consumer.seek(tp, first[tp])
        consumer.pause(*done)

        def release(idle: set[Any]) -> None:
            nonlocal records, alerts
            for tp, offset, (record, event) in merge.pop_ready(idle):
                origin = {"topic": tp.topic, "partition": tp.partition, "offset": offset}
                engine = engines.get(tp.partition) or engines.setdefault(tp.partition, engine_for(tp.partition))
                records += 1
                raised, rejection = engine.step(event)  # the engine may refuse an event too (a class, a time, a duplicate)
                if rejection is not None and on_reject is not None:
                    on_reject(rejection, record, origin)
                for alert in raised:
                    alerts += 1
                    on_alert(alert, origin)

        while len(done) < len(tps):
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= stop[tp]:
                        break
                    record = message.value if message.value is not None else b""
                    event = decode(record)
                    key = message.timestamp / 1000.0 if isinstance(event, Rejection) else event.ts
                    merge.add(tp, key, message.offset, (record, event))
            for tp in tps:
                if tp not in done and await consumer.position(tp) >= stop[tp]:
                    done.add(tp)
                    consumer.pause(tp)
            release(done)
            for tp in tps:  # bounded memory: a partition far ahead in event time waits for the others
                if tp in done:
                    continue
                if merge.pending(tp) > BUFFER_PER_PARTITION and tp not in paused:
                    consumer.pause(tp)
                    paused.add(tp)
                elif tp in paused and merge.pending(tp) < BUFFER_PER_PARTITION // 2:
                    consumer.resume(tp)
                    paused.discard(tp)
        release(done)
    summary = Summary(records=records, alerts=alerts, seconds=time.perf_counter() - started)
    for engine in {id(e): e for e in engines.values()}.values():
        summary.events += engine.events
        summary.rejected += engine.rejected
        summary.unmonitored += engine.unmonitored
        for key, count in engine.alerts_by_kind.items():
            summary.alerts_by_kind[key] = summary.alerts_by_kind.get(key, 0) + count
    return summary


def describe_position(position: tuple[str, int] | None) -> str:
    if position is None:
        return "-"
    kind, value = position
    if kind == "offset":
        return f"offset {value}"
    return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()
