"""The serving client for asyncio applications, on aiokafka.

The ``log_*`` calls stay plain (not ``async``) and return at once: they append the encoded record
to a bounded deque and wake a sender task on the application's event loop, which hands records to
aiokafka. A broker that is down or slow makes the sender wait, never the caller; the deque fills
and further records are dropped and counted. aiokafka uses Java's murmur2 partitioner, so records
land on the same partitions as those of :class:`tripwire.client.Client`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
from typing import Any, Mapping

from aiokafka.errors import KafkaTimeoutError

from tripwire.client.producer import CLIENT_ENV
from tripwire.client.recorder import DEFAULT_TOPIC, Recorder
from tripwire.streams.topics import KafkaSettings, kafka_settings


class AsyncClient(Recorder):
    """Send tripwire events from an asyncio service; same calls and counters as :class:`Client`.

    Use it as ``async with AsyncClient() as client:`` (or ``await client.start()`` /
    ``await client.close()``); the ``log_*`` calls themselves are not awaited. Parameters as for
    :class:`tripwire.client.Client`.
    """

    def __init__(self, bootstrap_servers: str | None = None, *, topic: str | None = None,
                 key_by: str | Mapping[str, str] | None = None, buffer_events: int | None = None,
                 delivery_timeout_s: float | None = None, linger_ms: float = 5.0, strict: bool = False,
                 settings: KafkaSettings | None = None, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        super().__init__(topic=topic or environ.get(CLIENT_ENV["topic"]) or DEFAULT_TOPIC,
                         key_by=key_by or environ.get(CLIENT_ENV["key_by"]) or "model", strict=strict)
        self._settings = settings or kafka_settings(broker=bootstrap_servers, environ=environ)
        self.bootstrap_servers = self._settings.bootstrap_servers
        self._buffer_events = buffer_events or int(environ.get(CLIENT_ENV["buffer_events"], 100_000))
        self._delivery_timeout_s = delivery_timeout_s or float(environ.get(CLIENT_ENV["delivery_timeout_s"], 120))
        self._linger_ms = linger_ms
        self._pending: collections.deque[tuple[bytes, bytes, int]] = collections.deque()
        self._in_flight = 0
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> AsyncClient:
        """Start the sender task on the running loop; returns at once, also when the broker is down."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._sender = asyncio.create_task(self._run(), name="tripwire-client-sender")
        return self

    def _send(self, key: bytes, value: bytes, timestamp_ms: int) -> None:
        if len(self._pending) >= self._buffer_events or self._loop is None:
            self._count_drop(undelivered=False)
            self._report(logging.WARNING, "full", "tripwire client: buffer full (%d events) or client not started, "
                         "events are dropped; is the broker at %s down?", len(self._pending), self.bootstrap_servers)
            return
        self._pending.append((key, value, timestamp_ms))
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()  # type: ignore[union-attr]
        else:  # a worker thread of the application: asyncio.Event is not thread-safe
            self._loop.call_soon_threadsafe(self._wakeup.set)  # type: ignore[union-attr]

    def _queued(self) -> int:
        return len(self._pending) + self._in_flight

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        timeout_ms = int(self._delivery_timeout_s * 1000)
        producer = AIOKafkaProducer(**self._settings.client_kwargs(), linger_ms=self._linger_ms,
                                    request_timeout_ms=timeout_ms, retry_backoff_ms=200)
        while True:  # a broker that is down at start is retried, not fatal
            try:
                await producer.start()
                break
            except KafkaError as error:
                self._broker_error(f"broker {self.bootstrap_servers}: {error!r}", down=True)
                await asyncio.sleep(1.0)
        try:
            while True:
                while not self._pending:
                    self._wakeup.clear()  # type: ignore[union-attr]
                    await self._wakeup.wait()  # type: ignore[union-attr]
                key, value, timestamp_ms = self._pending.popleft()
                self._in_flight += 1
                try:
                    delivery = await producer.send(self.topic, value, key=key, timestamp_ms=timestamp_ms)
                except KafkaError as error:  # no metadata / no room before the timeout
                    self._settle(error)
                    continue
                delivery.add_done_callback(self._on_delivery)
        finally:
            # aiokafka's stop() waits for every batch, up to the delivery timeout, if the broker is
            # down; what it has not delivered by then is failed and counted by _on_delivery.
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(producer.stop(), 5)

    def _on_delivery(self, delivery: asyncio.Future[Any]) -> None:
        self._settle(None if delivery.cancelled() else delivery.exception())

    def _settle(self, error: BaseException | None) -> None:
        self._in_flight -= 1
        if error is None:
            self._count_delivered()
        else:
            self._count_drop(undelivered=True, error=repr(error))
            self._broker_error(f"an event could not be delivered to {self.bootstrap_servers}: {error!r}",
                               # retriable: the broker's trouble (not ready, unreachable), not the record's
                               down=isinstance(error, KafkaTimeoutError) or getattr(error, "retriable", False))

    async def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds until everything buffered is delivered or dropped; returns what is left."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queued() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return self._queued()

    async def close(self, timeout: float = 5.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the sender (what is left is counted as dropped)."""
        if self._sender is None:
            return
        left = await self.flush(timeout)
        self._sender.cancel()
        try:
            await self._sender
        except asyncio.CancelledError:
            pass
        self._sender = None
        if self._pending:
            self._count_drop(undelivered=True, count=len(self._pending))
            self._pending.clear()
        if left:
            logging.getLogger("tripwire.client").warning("tripwire client closed with %d undelivered events", left)

    async def __aenter__(self) -> AsyncClient:
        return await self.start()

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()
