"""Delivery that never blocks its caller: a bounded buffer drained by a thread, with backoff.

The worker calls :meth:`DeliveryRunner.submit` from its event loop; that only appends to a buffer.
A thread of the runner's own takes the oldest items in batches and calls ``send``. When ``send``
raises :class:`Retry` (or anything else: unreachable, timeout, 5xx), the batch stays at the head
and the next attempt waits ``retry_seconds``, doubling up to ``max_retry_seconds``. When it raises
:class:`Rejected` (the receiver said the payload itself is wrong, e.g. HTTP 400) the batch is
dropped and counted, since sending it again cannot succeed. Past ``buffer`` items the oldest are
dropped and counted.

A retried batch may reach the receiver twice (it got it, the answer was lost): payloads carry the
alert's deterministic ``alert_id`` so receivers deduplicate.

``min_batch`` holds sending back until that many items are buffered (MLflow's window metrics go
in batches); ``background=False`` sends on the caller's thread instead of a thread of its own, from
:meth:`DeliveryRunner.submit` once a batch is due and the backoff is over (replays and tests).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from typing import Any, Callable, Mapping

log = logging.getLogger("tripwire.sinks")


class Rejected(Exception):
    """The receiver refused the payload for good (4xx): retrying cannot help."""


class DeliveryRunner:
    """One receiver's buffer, thread and backoff.

    ``send(batch)`` gets a list of at most ``batch_size`` payloads, in submission order; it returns
    when all were accepted and raises otherwise. ``periodic`` (optional) is called on the thread
    every ``periodic_seconds`` and returns payloads to submit (Alertmanager's re-send of open alerts).
    ``item`` names a payload in the log ("alert", "window").
    """

    def __init__(self, name: str, send: Callable[[list[Any]], None], *, buffer: int = 10_000, batch_size: int = 1,
                 min_batch: int = 1, background: bool = True, retry_seconds: float = 1.0,
                 max_retry_seconds: float = 300.0, periodic: Callable[[], list[Any]] | None = None,
                 periodic_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 item: str = "alert") -> None:
        self.name = name
        self._send = send
        self.buffer = buffer
        self.batch_size = batch_size
        self.min_batch = min_batch
        self.background = background
        self.item = item
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._periodic = periodic
        self._periodic_seconds = periodic_seconds
        self._clock = clock
        self._queue: deque[tuple[int, Any]] = deque()
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._draining = False  # flush / close: send what is buffered even below min_batch
        self._thread: threading.Thread | None = None
        self._delay = retry_seconds
        self._next_attempt = 0.0
        self._next_periodic = clock() + periodic_seconds
        # what happened, for summaries and tests
        self.submitted = 0
        self.delivered = 0
        self.dropped = 0
        self.rejected = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- the caller's side (cheap, never raises, never waits on the network) -----------------------
    def submit(self, payload: Any) -> None:
        with self._lock:
            self._seq += 1
            self.submitted += 1
            self._queue.append((self._seq, payload))
            while len(self._queue) > self.buffer:
                self._queue.popleft()
                self.dropped += 1
                if _power_of_ten(self.dropped):
                    log.warning("%s: buffer full (%d); dropped the oldest, %d dropped so far", self.name, self.buffer,
                                self.dropped)
        if not self.background:
            if self._due() and self._clock() >= self._next_attempt:
                self._attempt()
            return
        self._ensure_thread()
        self._wake.set()

    def _due(self) -> bool:
        return len(self._queue) >= (1 if self._draining else self.min_batch)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        """The delivery thread is alive (e.g. still inside a send after :meth:`close` gave up waiting)."""
        return self._thread is not None and self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closing and self.background:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=f"tripwire-sink-{self.name}", daemon=True)
                    self._thread.start()

    def start(self) -> None:
        """Start the thread now (it also starts on the first submit); needed for ``periodic``."""
        self._ensure_thread()

    def _loop(self) -> None:
        while not self._closing:
            now = self._clock()
            if self._periodic is not None and self._periodic_seconds and now >= self._next_periodic:
                self._next_periodic = now + self._periodic_seconds
                for payload in self._periodic():
                    self.submit(payload)
            if self._due() and now >= self._next_attempt:
                self._attempt()
                continue
            self._wake.wait(timeout=self._sleep(now))
            self._wake.clear()

    def _sleep(self, now: float) -> float | None:
        waits = []
        if self._due():
            waits.append(self._next_attempt - now)
        if self._periodic is not None and self._periodic_seconds:
            waits.append(self._next_periodic - now)
        return max(0.0, min(waits)) if waits else None

    def _attempt(self) -> bool:
        with self._lock:
            batch = list(itertools.islice(self._queue, self.batch_size))
        try:
            self._send([payload for _seq, payload in batch])
        except Rejected as error:
            self.rejected += len(batch)
            self.last_error = str(error)
            log.error("%s refused %d %s(s) for good (%s); dropped", self.name, len(batch), self.item, error)
        except Exception as error:
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {short_error(error)}"
            log.warning("%s: delivery failed (%s); %d buffered, next try in %.1f s", self.name, self.last_error,
                        self.pending, self._delay)
            self._next_attempt = self._clock() + self._delay
            self._delay = min(self._delay * 2, self.max_retry_seconds)
            return False
        else:
            self.delivered += len(batch)
        self._delay = self.retry_seconds
        self._next_attempt = 0.0
        last = batch[-1][0]
        with self._lock:  # the batch was the head; the buffer may have dropped some of it meanwhile
            while self._queue and self._queue[0][0] <= last:
                self._queue.popleft()
        return True

    # -- the end -----------------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the buffer to drain; True when it did."""
        if not self._queue:
            return True
        self._draining = True
        self._next_attempt = 0.0  # skip the backoff: we are about to stop
        self._delay = self.retry_seconds
        deadline = time.monotonic() + timeout
        try:
            if not self.background:  # retry here, with the backoff, while the next try fits in the time left
                while self._queue:
                    if self._attempt():
                        continue
                    wait = max(0.0, self._next_attempt - self._clock())
                    if time.monotonic() + wait >= deadline:
                        break
                    time.sleep(wait)
                return not self._queue
            self._ensure_thread()
            while self._queue and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.02)
            return not self._queue
        finally:
            self._draining = False

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is buffered (at most ``timeout`` seconds), then stop the thread."""
        ok = self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))
        if not ok:
            log.warning("%s: %d %s(s) not delivered at close (%s)", self.name, self.pending, self.item,
                        self.last_error or "no answer")
        return ok

    def summary(self) -> str:
        text = f"{self.name}: {self.delivered} of {self.submitted} delivered"
        if self.pending or self.dropped or self.rejected or self.failures:
            text += (f"; {self.pending} pending, {self.dropped} dropped, {self.rejected} rejected, "
                     f"{self.failures} failed attempts")
        return text


def _power_of_ten(n: int) -> bool:
    """1, 10, 100, ...: when a counter that keeps growing is worth a log line."""
    return n > 0 and str(n).strip("0") == "1"


def short_error(error: BaseException, head: int = 120, tail: int = 100) -> str:
    """One line; long messages keep their start (what failed) and end (the root cause)."""
    text = " ".join(str(error).split())
    return text if len(text) <= head + tail + 5 else f"{text[:head]} ... {text[-tail:]}"


def post_json(url: str, body: bytes, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> int:
    """POST ``body`` as JSON; the status code when 2xx. A 4xx other than 408 / 429 raises :class:`Rejected`,
    anything else (unreachable, timeout, 5xx) raises an error the runner retries."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        detail = error.read(300).decode("utf-8", "replace").strip()
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise Rejected(f"HTTP {error.code} from {where(url)}: {detail}") from None
        raise ConnectionError(f"HTTP {error.code} from {where(url)}: {detail}") from None
    except urllib.error.URLError as error:
        raise ConnectionError(f"{where(url)}: {error.reason}") from None


def where(url: str) -> str:
    """Scheme and host of ``url``: safe to log (webhook paths and queries often hold a secret token)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
