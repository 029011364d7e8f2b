"""What every tripwire client does before a record leaves the process: build, validate, key, count.

The transports (:class:`tripwire.client.Client` on librdkafka, :class:`tripwire.client.AsyncClient`
on aiokafka) only differ in how they hand the bytes to the broker; everything a caller sees —
the ``log_*`` signatures, the request ids, the validation, the key, the counters — lives here.

A record is validated by encoding it exactly as it will travel and running the engine's own
:func:`tripwire.events.decode` on those bytes: whatever the client accepts, the worker accepts
(numpy scalars, a NaN that JSON turns into ``null``, ... are judged as the engine will see them).
Calls with plain arguments (:mod:`tripwire.client.plain`) skip the decode: the engine's verdict on
them is known once they are encoded.

A transport may take the work off the caller's thread (``hand_off_limit``, as ``Client`` does): a
call then only appends its arguments (the dicts copied) to a bounded deque, and the same build,
validation and send run later, in call order, on the transport's thread.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import orjson

import tripwire.client.plain as plain
from tripwire.events import ContractError, Rejection, decode, format_ts

log = logging.getLogger("tripwire.client")

DEFAULT_TOPIC = "tripwire.events"
KEY_BY = ("model", "request_id")
_ENCODE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


# A generator of our own: an application that seeds ``random`` (for reproducible training, say) must
# not make two processes draw the same ids; seeded from the OS, again in every forked child.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, 128 random bits (as unique as a UUID4; no system call)."""
    return _ids.randbytes(16).hex()


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters of one client since it was created.

    ``accepted`` records passed validation and were handed to the transport; of those,
    ``delivered`` reached the broker, ``dropped_buffer_full`` found the bounded buffer full (the
    broker was down or slower than the caller) and ``dropped_undelivered`` could not be delivered
    before the delivery timeout. ``invalid`` records broke the event contract and never left the
    process. ``queued`` is what the buffer holds now.
    """

    accepted: int
    delivered: int
    queued: int
    dropped_buffer_full: int
    dropped_undelivered: int
    invalid: int
    broker_errors: int
    broker_available: bool
    last_error: str | None

    @property
    def dropped(self) -> int:
        return self.dropped_buffer_full + self.dropped_undelivered


class RateLimitedLog:
    """Log a message at most once per ``interval`` seconds per kind, with how many were suppressed.

    A broker outage produces an error per call or per reconnect attempt; the serving process's log
    must stay readable.
    """

    def __init__(self, logger: logging.Logger, interval: float = 30.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} similar messages in the last {self.interval:.0f} s not logged)"
        self.logger.log(level, message, *args)


class Recorder:
    """Build, validate and key events; the transport implements :meth:`_send`.

    Parameters
    ----------
    topic:
        The single input topic all three event types go to.
    key_by:
        The partitioning contract: ``"model"`` (every record keyed by its model, the default) or
        ``"request_id"`` (the hot-model design: a model spread over partitions, its prediction,
        features and label still meeting on one), or a mapping of model name to either for
        per-model choices (models not in it: ``"model"``).
    strict:
        Raise :class:`tripwire.events.ContractError` for an invalid event instead of counting it
        (for development and tests; a serving process should keep the default). Strict calls are
        built and sent on the caller's thread.
    hand_off_limit:
        ``None``: each call builds, validates and sends its record before it returns. A number: a
        call only appends its arguments to a queue of at most this many (past it the record is
        dropped and counted as ``dropped_buffer_full``) and the transport's thread builds,
        validates and sends them (:meth:`_drain`); :meth:`stats` drains first, so its counters
        include every call made before it.
    """

    def __init__(self, *, topic: str = DEFAULT_TOPIC, key_by: str | Mapping[str, str] = "model",
                 strict: bool = False, hand_off_limit: int | None = None) -> None:
        if isinstance(key_by, str):
            default, per_model = key_by, {}
        else:
            default, per_model = "model", dict(key_by)
        for choice in (default, *per_model.values()):
            if choice not in KEY_BY:
                raise ValueError(f"key_by must be one of {', '.join(KEY_BY)}, got {choice!r}")
        if not topic:
            raise ValueError("topic must be a non-empty topic name")
        self.topic = topic
        self._key_by_request = default == "request_id"
        self._key_by_model = {model: choice == "request_id" for model, choice in per_model.items()}
        self.strict = strict
        self._lock = threading.Lock()
        self._accepted = 0
        self._delivered = 0
        self._dropped_buffer_full = 0
        self._dropped_undelivered = 0
        self._invalid = 0
        self._broker_errors = 0
        self._broker_available = True
        self._last_error: str | None = None
        self._report = RateLimitedLog(log)
        # The hand-off (``hand_off_limit``): calls wait here as tuples of their arguments until
        # the transport's thread calls _drain(); None: each call is built and sent at once.
        self._handed_off: collections.deque[tuple[Any, ...]] | None = None if hand_off_limit is None else collections.deque()
        self._hand_off_limit = hand_off_limit or 0
        self._drain_lock = threading.Lock()

    # -- the public calls --------------------------------------------------------------------
    def log_prediction(self, model: str, prediction: Any, *, features: Mapping[str, Any] | None = None,
                       request_id: str | None = None, score: float | None = None,
                       scores: Mapping[str, float] | None = None, latency_ms: float | None = None,
                       attributes: Mapping[str, Any] | None = None, model_version: str | None = None,
                       ts: float | datetime | str | None = None) -> str:
        """Send a prediction event; returns its request id (generated when not given).

        Never raises (unless ``strict``) and never waits for the broker.
        """
        if not request_id:
            request_id = new_request_id()
        # The dicts are copied: the caller may reuse them once we return.
        self._submit((self._prediction, model, request_id, prediction, _now() if ts is None else ts,
                      features.copy() if type(features) is dict else features, score,
                      scores.copy() if type(scores) is dict else scores, latency_ms,
                      attributes.copy() if type(attributes) is dict else attributes, model_version))
        return request_id

    def log_features(self, model: str, features: Mapping[str, Any], *, request_id: str | None = None,
                     ts: float | datetime | str | None = None) -> str:
        """Send a features event (features known apart from the prediction); returns its request id."""
        request_id = request_id or new_request_id()
        self._submit((self._features, model, request_id, _now() if ts is None else ts,
                      features.copy() if type(features) is dict else features))
        return request_id

    def log_label(self, model: str, request_id: str, label: Any, *, ts: float | datetime | str | None = None) -> str:
        """Send the true outcome of the prediction ``request_id``; returns the request id."""
        self._submit((self._label, model, request_id, _now() if ts is None else ts, label))
        return request_id

    def stats(self) -> ClientStats:
        """The counters now (a consistent-enough snapshot: each counter is read once)."""
        self._drain()
        return ClientStats(self._accepted, self._delivered_count(), self._queued(), self._dropped_buffer_full,
                           self._dropped_undelivered, self._invalid, self._broker_errors, self._broker_available,
                           self._last_error)

    # -- the hand-off ---------------------------------------------------------------------------
    def _submit(self, call: tuple[Any, ...]) -> None:
        """Queue ``call`` (a builder and its arguments) for the transport's thread, or run it now."""
        handed_off = self._handed_off
        if handed_off is None or self.strict:
            self._build_now(call)
        elif len(handed_off) < self._hand_off_limit:
            handed_off.append(call)
        else:
            self._drop_at_hand_off()

    def _build_now(self, call: tuple[Any, ...]) -> None:
        """Build and send ``call`` on the caller's thread, after the calls queued before it (their order is kept)."""
        if self._handed_off:
            self._drain()
        call[0](*call[1:])

    def _drain(self, limit: int | None = None) -> int:
        """Build, validate and send up to ``limit`` queued calls (all by default), oldest first; how many."""
        handed_off = self._handed_off
        if not handed_off:
            return 0
        done = 0
        with self._drain_lock:
            while handed_off and (limit is None or done < limit):
                call = handed_off.popleft()
                try:
                    call[0](*call[1:])
                except ContractError:  # counted; made before a switch to strict, it is not this thread's to raise
                    pass
                except Exception as error:  # a caller's object that fails oddly must not stop the sender thread
                    with self._lock:
                        self._invalid += 1
                    self._report(logging.WARNING, "invalid", "tripwire client: an event could not be built: %r", error)
                done += 1
        return done

    def _drop_at_hand_off(self) -> None:
        # Counted as accepted and dropped, as a record the transport's full buffer refused.
        with self._lock:
            self._accepted += 1
            self._dropped_buffer_full += 1
        self._report(logging.WARNING, "full", "tripwire client: %d events wait for the sender thread, events are "
                     "dropped", len(self._handed_off or ()))

    # -- building a record (on the transport's thread when the calls are handed off) -------------
    def _prediction(self, model: Any, request_id: Any, prediction: Any, ts: Any, features: Any, score: Any,
                    scores: Any, latency_ms: Any, attributes: Any, model_version: Any) -> None:
        obj: dict[str, Any] = {"type": "prediction", "schema": 1, "request_id": request_id, "model": model,
                               "ts": ts, "prediction": prediction}
        if model_version is not None:
            obj["model_version"] = model_version
        if features is not None:
            obj["features"] = features
        if score is not None:
            obj["score"] = score
        if scores is not None:
            obj["scores"] = scores
        if latency_ms is not None:
            obj["latency_ms"] = latency_ms
        if attributes is not None:
            obj["attributes"] = attributes
        surely_valid = plain.prediction(model, request_id, prediction, ts, features, latency_ms, model_version,
                                        attributes, score, scores)
        self._emit(obj, model, surely_valid)

    def _features(self, model: Any, request_id: Any, ts: Any, features: Any) -> None:
        self._emit({"type": "features", "schema": 1, "request_id": request_id, "model": model,
                    "ts": ts, "features": features}, model,
                   plain.text(model) and plain.text(request_id) and type(features) is dict and plain.timestamp(ts))

    def _label(self, model: Any, request_id: Any, ts: Any, label: Any) -> None:
        self._emit({"type": "label", "schema": 1, "request_id": request_id, "model": model,
                    "ts": ts, "label": label}, model,
                   plain.text(model) and plain.text(request_id) and plain.scalar(label) and plain.timestamp(ts))

    # -- shared by the transports ------------------------------------------------------------
    def key_for(self, model: str, request_id: str) -> bytes:
        by_request = self._key_by_model.get(model, self._key_by_request)
        return (request_id if by_request else model).encode()

    def _emit(self, obj: dict[str, Any], model: Any, surely_valid: bool) -> None:
        """Validate ``obj`` as the engine will read it and hand it to the transport, or count why not.

        ``surely_valid``: the arguments are plain (:mod:`tripwire.client.plain`), so encoding them
        is the whole check; otherwise the engine's decode judges the encoded record.
        """
        try:
            if surely_valid:
                timestamp_ms = round(obj["ts"] * 1000)  # epoch seconds: the caller's or the call's
                obj["ts"] = _iso_millis(timestamp_ms)
                value = orjson.dumps(obj, None, _ENCODE)  # positional: keyword parsing costs more than encoding
                key_model, request_id = model, obj["request_id"]
            else:
                obj["ts"] = _timestamp(obj["ts"])
                value = orjson.dumps(obj, option=_ENCODE)
                event = decode(value)
                if isinstance(event, Rejection):
                    raise ContractError(event.reason)
                key_model, request_id, timestamp_ms = event.model, event.request_id, round(event.ts * 1000)
        # JSONEncodeError is a TypeError; a ts beyond the platform's time_t is an OSError
        except (ContractError, TypeError, ValueError, OverflowError, OSError) as error:
            with self._lock:
                self._invalid += 1
            if self.strict:
                raise ContractError(str(error)) from None
            self._report(logging.WARNING, "invalid", "tripwire client: %s event of model %r not sent: %s",
                         obj.get("type"), model, error)
            return
        try:
            # the default contract (every model keyed by itself) without a call: a call costs ~2 µs cold
            key = self.key_for(key_model, request_id) if self._key_by_model or self._key_by_request \
                else key_model.encode()
            self._send(key, value, timestamp_ms)
        except Exception as error:  # the transport must never take the prediction path down
            self._count_drop(undelivered=True)
            self._report(logging.ERROR, "send", "tripwire client: could not hand an event to the producer: %r", error)
        with self._lock:  # after the transport took (or dropped) it: see Client._delivered_count
            self._accepted += 1

    def _count_drop(self, *, undelivered: bool, error: str | None = None, count: int = 1) -> None:
        with self._lock:
            if undelivered:
                self._dropped_undelivered += count
            else:
                self._dropped_buffer_full += count
            if error is not None:
                self._last_error = error

    def _count_delivered(self, count: int = 1) -> None:
        with self._lock:
            self._delivered += count
        if not self._broker_available:
            self._broker_back()

    def _broker_back(self) -> None:
        self._broker_available = True
        log.warning("tripwire client: the broker is reachable again; events are delivered (%d dropped so far)",
                    self._dropped_buffer_full + self._dropped_undelivered)

    def _broker_error(self, description: str, *, down: bool) -> None:
        with self._lock:
            self._broker_errors += 1
            self._last_error = description
        if down:
            self._broker_available = False
        self._report(logging.WARNING, "broker", "tripwire client: %s; events are buffered (%d queued, %d dropped so far)",
                     description, self._queued(), self._dropped_buffer_full + self._dropped_undelivered)

    def _send(self, key: bytes, value: bytes, timestamp_ms: int) -> None:
        raise NotImplementedError

    def _queued(self) -> int:
        raise NotImplementedError

    def _delivered_count(self) -> int:
        return self._delivered


_now = time.time  # a call's time, taken on the caller's thread even when its record is built later


def _timestamp(ts: float | datetime | str) -> Any:
    """The contract's ``ts``: epoch seconds or a datetime as ISO 8601; a string is passed on as given."""
    if isinstance(ts, datetime):
        return ts.isoformat()
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return _iso(ts)
    return ts


_second_prefix: tuple[int, str] = (-1, "")


def _iso(epoch_seconds: float) -> str:
    """:func:`tripwire.events.format_ts`, with the date and time of the current second cached.

    ``format_ts`` builds a datetime per call (about half of a ``log_prediction`` call); a serving
    process logs many events within one second. Threads racing here only recompute the prefix.

    >>> _iso(1764306000.12) == format_ts(1764306000.12) == "2025-11-28T05:00:00.120Z"
    True
    """
    return _iso_millis(round(epoch_seconds * 1000))


def _iso_millis(epoch_millis: int) -> str:
    global _second_prefix
    second = epoch_millis // 1000
    cached_second, prefix = _second_prefix
    if second != cached_second:
        prefix = format_ts(second)[:-4]  # "YYYY-MM-DDTHH:MM:SS." of format_ts's own output
        _second_prefix = (second, prefix)
    # a lookup, not divmod and a format spec: each costs a microsecond on a cold cache
    return prefix + _MILLIS[epoch_millis - second * 1000]


_MILLIS = tuple(f"{millis:03d}Z" for millis in range(1000))
