"""Log hygiene with real logging records: secrets masked everywhere, repeated errors collapsed."""

from __future__ import annotations

import contextlib
import io
import logging

import pytest

from tripwire import logs

SECRET = "s3cr3t-Pa55w0rd"


@contextlib.contextmanager
def captured(*names: str, level: int = logging.DEBUG):
    """A real handler on real loggers, collecting the formatted output."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield out
    finally:
        for logger, (old_level, propagate) in zip(loggers, saved):
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = propagate


@contextlib.contextmanager
def record_factory(*steps):
    """Only ``steps`` make records meanwhile (not what an earlier test's install() put in place)."""
    make = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = logging.LogRecord(*args, **kwargs)
        for step in steps:
            record = step(record)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)


def test_installed_redaction_masks_secrets_in_every_part_of_every_record():
    logs.install(environ={"TRIPWIRE_KAFKA_SASL_PASSWORD": SECRET})
    logs.add_secrets("from-a-config-file-9", None, "ab")  # None and too-short values are ignored
    with captured("aiokafka.conn", "faust.worker", "tripwire.worker") as out:
        logging.getLogger("aiokafka.conn").debug("SASL PLAIN login with password %s", SECRET)
        logging.getLogger("faust.worker").debug("conf: %r", {"broker_credentials": {"password": SECRET}})
        logging.getLogger("tripwire.worker").info(f"inline {SECRET} and from-a-config-file-9")
        logging.getLogger("faust.worker").debug("quoted %r", [SECRET + "'x"])
        try:
            raise ConnectionError(f"auth failed for password={SECRET}")
        except ConnectionError:
            logging.getLogger("aiokafka.conn").exception("connection lost")
        logging.getLogger("tripwire.worker").warning("no secret here: %d records", 12)
    text = out.getvalue()
    assert SECRET not in text and "from-a-config-file-9" not in text
    assert text.count("***") >= 6
    assert "connection lost" in text and "ConnectionError: auth failed for password=***" in text
    assert "no secret here: 12 records" in text  # ordinary records are untouched


def test_repeated_errors_are_collapsed_into_a_periodic_count():
    now = [0.0]
    limiter = logs.RepeatLimiter(interval=10.0, clock=lambda: now[0])
    with record_factory(limiter), captured("aiokafka.conn", "aiokafka.client") as out:
        conn, client = logging.getLogger("aiokafka.conn"), logging.getLogger("aiokafka.client")
        for second in range(40):  # a 40 s outage, 100 connection errors a second
            for attempt in range(100):
                now[0] = second + attempt / 100
                conn.error("Unable connect to %r: %s", "127.0.0.1:9092", "Connect call failed")
            client.warning("Unable to update metadata from [%s]", 1)
            conn.info("attempt %d", second)  # below WARNING: never limited
    lines = out.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 4  # at 0 s, then one line per 10 s
    assert errors[0] == "ERROR aiokafka.conn Unable connect to '127.0.0.1:9092': Connect call failed"
    # 4,000 errors: 4 lines, 3 x 999 counted, the last 999 still pending when the outage ends
    assert all(line.endswith("[999 more like this in the last 10 s]") for line in errors[1:])
    assert len([line for line in lines if line.startswith("WARNING")]) == 4
    assert len([line for line in lines if line.startswith("INFO")]) == 40


def test_different_messages_and_loggers_are_limited_separately():
    limiter = logs.RepeatLimiter(interval=60.0, clock=lambda: 0.0)
    with record_factory(limiter), captured("a", "b") as out:
        for _ in range(5):
            logging.getLogger("a").error("one")
            logging.getLogger("a").error("two %s", "x")
            logging.getLogger("b").error("one")
            logging.getLogger("a").critical("one")
    assert sorted(out.getvalue().splitlines()) == ["CRITICAL a one", "ERROR a one", "ERROR a two x", "ERROR b one"]


@pytest.mark.parametrize("secret", [SECRET, "pä55 wörd\\\"'"])
def test_redactor_masks_repr_forms(secret):
    redactor = logs.SecretRedactor([secret])
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "%r", ({"password": secret},), None)
    assert secret not in redactor(record).getMessage()
    assert repr(secret)[1:-1] not in record.getMessage()


def test_the_limiter_stays_bounded_under_distinct_messages():
    now = [0.0]
    limiter = logs.RepeatLimiter(interval=10.0, clock=lambda: now[0])
    with record_factory(limiter), captured("tripwire.worker") as out:
        for i in range(20_000):  # pre-formatted messages: every one a kind of its own
            now[0] = i / 100
            logging.getLogger("tripwire.worker").warning(f"record {i} rejected")
    assert len(out.getvalue().splitlines()) == 20_000  # none is a repeat, none is held back
    assert len(limiter._kinds) <= 4096
