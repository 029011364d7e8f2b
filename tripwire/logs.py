"""What a tripwire process may write to its log: no secrets, and no floods of one repeated error.

Both rules hold for every logger (tripwire's, aiokafka's, Faust's) at every level, whatever
handlers Faust installs later, because they act where records are made
(:func:`logging.setLogRecordFactory`), not in a handler:

* :class:`SecretRedactor` replaces each configured secret (a SASL or key password ...) in a
  record's message, arguments and traceback with ``***``.
* :class:`RepeatLimiter` lets the first WARNING-or-worse record of a kind (logger, level,
  message template) through, then, for the next ``interval`` seconds, only counts repeats; the
  first repeat after that goes out with the count (``[312 more like this in the last 10 s]``).
  A broker outage gives a line every few seconds instead of thousands. A count still pending
  when the repeats stop is not written.

:func:`install` (called once by the CLI) puts both in place; :func:`add_secrets` registers more
values as they become known (a password from a config file).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Iterable

__all__ = ["RepeatLimiter", "SecretRedactor", "add_secrets", "install", "SECRET_ENVIRONMENT"]

MASK = "***"
# Environment variables whose values are secrets wherever they show up.
SECRET_ENVIRONMENT = ("TRIPWIRE_KAFKA_SASL_PASSWORD", "TRIPWIRE_KAFKA_SSL_PASSWORD", "MLFLOW_TRACKING_PASSWORD",
                      "MLFLOW_TRACKING_TOKEN")
# Below every handler's level (NOTSET is 0): a record given this level is made but never emitted.
SUPPRESSED = -1
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and digits
_MAX_KINDS = 4096  # kinds of records the repeat limiter remembers


class SecretRedactor:
    """Masks known secret values in log records.

    Examples
    --------
    >>> import logging
    >>> redactor = SecretRedactor(["hunter2-password"])
    >>> record = logging.LogRecord("aiokafka", logging.DEBUG, __file__, 1, "login with %s", ("hunter2-password",), None)
    >>> redactor(record).getMessage()
    'login with ***'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET_LENGTH:
                self.secrets.add(secret)
                self.secrets.add(repr(secret)[1:-1])  # as it appears inside a repr()'d container

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def __call__(self, record: logging.LogRecord) -> logging.LogRecord:
        if not self.secrets:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it later, with the raw parts
            message = f"{record.msg!s} {record.args!r}"
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return record


class RepeatLimiter:
    """Collapses repeated WARNING-or-worse records of one kind into a periodic count.

    Examples
    --------
    >>> import logging
    >>> clock = iter([0.0, 1.0, 2.0, 12.0]).__next__
    >>> limiter = RepeatLimiter(interval=10.0, clock=clock)
    >>> def record():
    ...     return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, "Unable connect to %r", ("k:9092",), None)
    >>> [(r.levelno, r.getMessage()) for r in (limiter(record()) for _ in range(4))]  # doctest: +NORMALIZE_WHITESPACE
    [(40, "Unable connect to 'k:9092'"), (-1, "Unable connect to 'k:9092'"), (-1, "Unable connect to 'k:9092'"),
     (40, "Unable connect to 'k:9092' [2 more like this in the last 12 s]")]
    """

    def __init__(self, interval: float = 10.0, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.level = level
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], list[float | int]] = {}  # kind -> [last emitted at, repeats]

    def __call__(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.levelno < self.level:
            return record
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is None:
            if len(self._kinds) >= _MAX_KINDS:  # pre-formatted messages are kinds of their own: stay bounded
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval}
                if len(self._kinds) >= _MAX_KINDS:
                    self._kinds.clear()
            self._kinds[kind] = [now, 0]
            return record
        emitted_at, repeats = seen
        if now - emitted_at < self.interval:
            seen[1] = int(repeats) + 1
            record.levelno, record.levelname = SUPPRESSED, "SUPPRESSED"
            return record
        if repeats:
            record.msg = f"{record.getMessage()} [{repeats} more like this in the last {now - emitted_at:.0f} s]"
            record.args = ()
        self._kinds[kind] = [now, 0]
        return record


_redactor = SecretRedactor()
_installed: list[Any] = []


def add_secrets(*secrets: str | None) -> None:
    """Mask these values (None and very short values are ignored) in every record from now on."""
    _redactor.add(secrets)


def install(repeat_interval: float = 10.0, environ: dict[str, str] | None = None) -> None:
    """Redact secrets (those in :data:`SECRET_ENVIRONMENT` now, more via :func:`add_secrets`) and
    rate-limit repeated warnings and errors in every record any logger makes. Idempotent."""
    environ = dict(os.environ if environ is None else environ)
    add_secrets(*(environ.get(name) for name in SECRET_ENVIRONMENT))
    if _installed:
        _installed[0].interval = repeat_interval
        return
    limiter = RepeatLimiter(repeat_interval)
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        # Redact first, so a repeat count is appended to an already masked message.
        return limiter(_redactor(make(*args, **kwargs)))

    logging.setLogRecordFactory(factory)
    _installed.append(limiter)
