"""The serving client on librdkafka (confluent-kafka): a hand-off to one sender thread, then ``produce()``.

A ``log_*`` call does the least it can on the caller's thread: it takes a request id and the time,
copies the dicts it was given and appends that tuple to a bounded deque (about 5 µs at 1,000
calls/s on a busy machine's cold caches, against 25 µs for building, validating and producing the
record there). Our one daemon thread wakes every 5 ms, builds, validates (exactly as before:
:mod:`tripwire.client.recorder`) and produces what was handed off, and serves librdkafka's error
callbacks. Each of its batches holds the GIL (about 60 µs for the 5 records of 5 ms at 1,000
calls/s; a backlog goes 32 records at a time); a serving thread that wants the GIL meanwhile
waits for the batch to end (bench.client_latency times the batches).

Why librdkafka in a serving process: ``Producer.produce()`` is a C call that copies the record
into librdkafka's queue and returns (no I/O, no lock held across the network); batching,
compression, retries and reconnects happen on librdkafka's own threads, outside the GIL. A full
queue is an immediate ``BufferError``, never a wait — exactly the "never block the caller" rule.
librdkafka reports failed deliveries only: a Python callback per delivered record would make the
sender thread take the GIL hundreds of times a second.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any, Mapping

from confluent_kafka import KafkaException, Producer

from tripwire.client.recorder import DEFAULT_TOPIC, RateLimitedLog, Recorder
from tripwire.streams.topics import KafkaSettings, kafka_settings

# The sender thread wakes this often to build and send the calls handed off meanwhile (10 at
# 1,000 calls/s), at most this many per hold of the GIL.
HAND_OFF_INTERVAL_S = 0.005
HAND_OFF_BATCH = 32
CLIENT_ENV = {"topic": "TRIPWIRE_CLIENT_TOPIC", "key_by": "TRIPWIRE_CLIENT_KEY_BY",
              "buffer_events": "TRIPWIRE_CLIENT_BUFFER_EVENTS", "delivery_timeout_s": "TRIPWIRE_CLIENT_DELIVERY_TIMEOUT_S"}
# librdkafka errors that mean "no broker to talk to right now". One connection dropping
# (_TRANSPORT: a broker of several restarting, an idle connection closed) is not an outage.
_OUTAGE_CODES = ("_ALL_BROKERS_DOWN", "_MSG_TIMED_OUT")


def librdkafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """The connection part of a librdkafka config from tripwire's ``[kafka]`` settings."""
    config: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers, "client.id": settings.client_id,
                              "security.protocol": settings.security_protocol.lower()}
    if settings.uses_sasl:
        config.update({"sasl.mechanism": settings.sasl_mechanism, "sasl.username": settings.sasl_username,
                       "sasl.password": settings.sasl_password})
    if settings.uses_ssl:
        optional = {"ssl.ca.location": settings.ssl_cafile, "ssl.certificate.location": settings.ssl_certfile,
                    "ssl.key.location": settings.ssl_keyfile, "ssl.key.password": settings.ssl_password}
        config.update({k: v for k, v in optional.items() if v})
        config["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
    return config


class Client(Recorder):
    """Send tripwire events from a serving process without slowing it down.

    Parameters
    ----------
    bootstrap_servers:
        ``"host:port[,host:port]"``; default ``TRIPWIRE_KAFKA_BOOTSTRAP``, then ``127.0.0.1:9092``.
        TLS / SASL come from the same ``TRIPWIRE_KAFKA_*`` variables as the worker's (or ``settings``).
    topic, key_by, strict:
        See :class:`tripwire.client.recorder.Recorder`; ``topic`` defaults to
        ``TRIPWIRE_CLIENT_TOPIC``, then ``tripwire.events``.
    buffer_events:
        Records held while the broker is slow or down; past it new records are dropped and counted.
        The hand-off to the sender thread has the same bound (it fills only if that thread stalls).
    delivery_timeout_s:
        How long a buffered record keeps being retried before it is dropped and counted.
    linger_ms:
        How long librdkafka gathers records into a batch (default 1 s, as telemetry SDKs batch:
        OpenTelemetry's span exporter waits 5 s). The ``produce()`` that finds a batch due wakes
        librdkafka's sending thread, and on a busy machine that wakeup can cost the producing
        thread its time slice (p99 added 348-833 µs at 5 ms vs 78-112 µs at 1 s in
        bench.client_latency, measured when the caller produced; our sender thread does now).
        The worker sees a record up to this much later.
    producer_config:
        Extra librdkafka settings, applied last.

    Examples
    --------
    >>> client = Client("127.0.0.1:1", delivery_timeout_s=1)   # no broker there: nothing raises
    >>> request_id = client.log_prediction("fuel-efficiency", 31.2, features={"weight": 2190.0}, latency_ms=12.4)
    >>> len(request_id), client.stats().accepted
    (32, 1)
    >>> client.close(timeout=0)
    """

    def __init__(self, bootstrap_servers: str | None = None, *, topic: str | None = None,
                 key_by: str | Mapping[str, str] | None = None, buffer_events: int | None = None,
                 delivery_timeout_s: float | None = None, linger_ms: float = 1000.0, strict: bool = False,
                 settings: KafkaSettings | None = None, producer_config: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        buffer_events = buffer_events or int(environ.get(CLIENT_ENV["buffer_events"], 100_000))
        super().__init__(topic=topic or environ.get(CLIENT_ENV["topic"]) or DEFAULT_TOPIC,
                         key_by=key_by or environ.get(CLIENT_ENV["key_by"]) or "model", strict=strict,
                         hand_off_limit=buffer_events)
        settings = settings or kafka_settings(broker=bootstrap_servers, environ=environ)
        self.bootstrap_servers = settings.bootstrap_servers
        delivery_timeout_s = delivery_timeout_s or float(environ.get(CLIENT_ENV["delivery_timeout_s"], 120))
        config = {
            **librdkafka_config(settings),
            # Java's murmur2 (as aiokafka and the Java producer): the same key lands on the same
            # partition whichever of these clients produced it, so a label sent by a batch job
            # meets its prediction sent from the server.
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": buffer_events,
            "queue.buffering.max.kbytes": 256 * 1024,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            # librdkafka refuses a linger not shorter than the delivery timeout (a test may use 1 s)
            "linger.ms": min(linger_ms, delivery_timeout_s * 1000 / 2),
            # Back on a returning broker within a second, not librdkafka's default 10 s; a topic
            # that a returning (or new) cluster did not have at first is looked up again within
            # 30 s, not 5 min (until then produce() fails at once, counted as undelivered).
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 30_000,
            "log.connection.close": False,  # brokers close idle connections: not worth a log line
            "on_delivery": self._on_failed_delivery,
            "error_cb": self._on_error,
            "logger": _LIBRDKAFKA_LOG,
            **(producer_config or {}),
            # Records handed over, minus failures, minus what is still queued, were delivered.
            "delivery.report.only.error": True,
        }
        self._producer = Producer(config)
        self._buffer_events = buffer_events
        self._full = False
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_until_closed, name="tripwire-client-poll", daemon=True)
        self._poller.start()
        atexit.register(self.close)

    def _send(self, key: bytes, value: bytes, timestamp_ms: int) -> None:
        try:
            if self._full and len(self._producer) >= self._buffer_events:
                raise BufferError  # still full: skip librdkafka's locks and its exception object
            # Positional (partition -1: the partitioner's; no per-record callbacks): parsing keyword
            # arguments costs confluent-kafka more than the produce itself.
            self._producer.produce(self.topic, value, key, -1, None, None, timestamp_ms)
            self._full = False
        except BufferError:
            self._full = True
            self._count_drop(undelivered=False)
            self._report(logging.WARNING, "full", "tripwire client: buffer full (%d events), events are dropped; "
                         "is the broker at %s down?", len(self._producer), self.bootstrap_servers)
        except KafkaException as error:  # the cluster says the topic does not exist (a new or wiped cluster)
            self._count_drop(undelivered=True, error=str(error.args[0]))
            self._broker_error(f"broker {self.bootstrap_servers}: topic {self.topic}: {error.args[0].str()}", down=False)

    def _queued(self) -> int:
        return len(self._producer) + len(self._handed_off or ())

    def _delivered_count(self) -> int:
        # Every accepted record is delivered, dropped or still queued. A record is counted as
        # accepted only once the transport has taken or dropped it, and a failed one stays queued
        # until its report is served: read in this order, a call or a report in progress makes
        # this an undercount, never an overcount (which would announce a returning broker
        # during an outage).
        accepted, full, undelivered = self._accepted, self._dropped_buffer_full, self._dropped_undelivered
        return max(0, accepted - full - undelivered - len(self._producer))

    def _on_failed_delivery(self, error: Any, _message: Any) -> None:
        self._count_drop(undelivered=True, error=error.str())
        self._broker_error(f"an event could not be delivered to {self.bootstrap_servers}: {error.str()}",
                           down=error.name() in _OUTAGE_CODES)

    def _poll_until_closed(self) -> None:
        """Build and send the handed-off calls, serve error callbacks; notice when deliveries resume after an outage."""
        delivered = 0
        while not self._closed.is_set():
            self._producer.poll(HAND_OFF_INTERVAL_S)  # returns at once on an error; releases the GIL while it waits
            # A backlog (after a stall) goes a bounded batch at a time, the GIL released between
            # batches (poll(0)) so that a serving thread running on the other core can take it.
            while self._drain(HAND_OFF_BATCH) == HAND_OFF_BATCH:
                self._producer.poll(0)
            delivered, before = self._delivered_count(), delivered
            if delivered > before and not self._broker_available:
                self._broker_back()

    def _on_error(self, error: Any) -> None:
        self._broker_error(f"broker {self.bootstrap_servers}: {error.str()}", down=error.name() in _OUTAGE_CODES)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for buffered events to be delivered; returns how many are left."""
        self._drain()
        return self._producer.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to ``timeout`` seconds and stop the background thread (idempotent).

        Calls made after it are built and sent on the caller's thread (there is no sender thread left).
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self._poller.join(timeout=2)
        self._drain()
        self._handed_off = None
        left = self._producer.flush(timeout)
        atexit.unregister(self.close)
        if left:
            logging.getLogger("tripwire.client").warning("tripwire client closed with %d undelivered events", left)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()


class _RateLimitedLogger(logging.LoggerAdapter):
    """librdkafka's own log lines (connection refused, ...), at most one per kind per 30 s."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tripwire.client.librdkafka"), {})
        self._limited = RateLimitedLog(self.logger)

    def log(self, level: int, msg: Any, *args: Any, **_kwargs: Any) -> None:
        # confluent-kafka calls log(level, "%s [%s] %s", facility, client name, message)
        facility = str(args[0]) if args else str(msg)
        self._limited(level, facility, str(msg), *args)


_LIBRDKAFKA_LOG = _RateLimitedLogger()
