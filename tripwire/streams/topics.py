"""Where the broker is, how to reach it, what the topics are called, and creating them.

Settings come from the ``[kafka]`` table of the config, then the environment, which wins:
``TRIPWIRE_KAFKA_BOOTSTRAP`` for ``bootstrap_servers`` and ``TRIPWIRE_KAFKA_<KEY>`` for every other
scalar key (``TRIPWIRE_KAFKA_SASL_PASSWORD``, ``TRIPWIRE_KAFKA_SECURITY_PROTOCOL``, ...), so a
password never has to sit in a file. A wrong value names the key or the variable it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Iterable, Mapping

from tripwire.config import KAFKA_KEYS, ConfigError, MonitorConfig, WorkerSettings
from tripwire.config_values import _parse

ENV_PREFIX = "TRIPWIRE_KAFKA_"
# A checkpoint is one record per partition: compacted, so only the latest stays; segments roll
# often so compaction can actually drop the old ones; big records for large label-join state.
CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024
MAX_REQUEST_BYTES = CHECKPOINT_MAX_BYTES + (1 << 20)  # a producer's / reader's request: a checkpoint fits
RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # between retries of a publish the broker refused
CHECKPOINT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
    "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
}


@contextlib.asynccontextmanager
async def running(client: Any) -> Any:
    """Start an aiokafka client and always stop it, also when starting failed (no "Unclosed" warnings)."""
    try:
        await client.start()
        yield client
    finally:
        await client.stop()


BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def env_name(key: str) -> str:
    return "TRIPWIRE_KAFKA_BOOTSTRAP" if key == "bootstrap_servers" else ENV_PREFIX + key.upper()


@dataclass
class KafkaSettings:
    """The ``[kafka]`` table after the environment was applied."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "tripwire"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    partitions: int = 4
    replication_factor: int = 1
    create_topics: bool = True
    topics: dict[str, str] = field(default_factory=dict)

    @property
    def events(self) -> str:
        """The input topic: predictions, features and labels in one log, each partition in its order."""
        return self.topics["events"]

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_ssl:
            return None
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile,
                                     password=self.ssl_password)
        context.check_hostname = self.ssl_check_hostname
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id,
                                  "security_protocol": self.security_protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs

    def faust_broker(self) -> list[str]:
        return [f"kafka://{server}" for server in self.bootstrap_servers.split(",")]

    def faust_credentials(self) -> Any:
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        if self.uses_ssl:
            return faust.SSLCredentials(self.ssl_context())
        return None


def worker_env_name(key: str) -> str:
    return "TRIPWIRE_WORKER_ID" if key == "worker_id" else "TRIPWIRE_WORKER_" + key.upper()


def from_environment(values: dict[str, Any], keys: Mapping[str, tuple[Any, Any, str]], name: Any,
                     environ: Mapping[str, str]) -> dict[str, Any]:
    """``values`` with every scalar key that is set in ``environ`` (as ``name(key)``) parsed and replaced."""
    values = dict(values)
    for key, (parser, default, _doc) in keys.items():
        raw = environ.get(name(key))
        if raw is None or isinstance(default, dict):
            continue
        value: Any = raw.strip()
        if type(default) is bool:
            value = BOOLEAN_WORDS.get(value.lower(), raw)
        elif type(default) is tuple:  # a list key: comma-separated, TRIPWIRE_WORKER_STAGES=input,merge
            value = [part.strip() for part in value.split(",")]
        elif type(default) in (int, float):
            try:
                value = float(value) if "." in value else int(value)
            except ValueError:
                pass
        values[key] = _parse(parser, value, f"environment {name(key)}")
    return values


def worker_settings(config: MonitorConfig, environ: Mapping[str, str] | None = None) -> WorkerSettings:
    """``[worker]`` of ``config`` overridden by ``TRIPWIRE_WORKER_<KEY>`` (``TRIPWIRE_WORKER_ID``)."""
    from tripwire.config import WORKER_KEYS

    overrides = from_environment({}, WORKER_KEYS, worker_env_name, os.environ if environ is None else environ)
    return replace(config.worker, **overrides)


def kafka_settings(config: MonitorConfig | None = None, *, broker: str | None = None,
                   environ: Mapping[str, str] | None = None) -> KafkaSettings:
    """``[kafka]`` of ``config`` (or the defaults), overridden by the environment, then by ``broker``."""
    environ = os.environ if environ is None else environ
    values = dict(config.kafka) if config is not None else {k: d for k, (_p, d, _doc) in KAFKA_KEYS.items()}
    values = from_environment(values, KAFKA_KEYS, env_name, environ)
    if broker:
        values["bootstrap_servers"] = _parse(KAFKA_KEYS["bootstrap_servers"][0], broker, "--broker")
    settings = KafkaSettings(**values)
    if settings.uses_sasl and not (settings.sasl_username and settings.sasl_password):
        raise ConfigError(f"kafka.security_protocol = {settings.security_protocol} needs kafka.sasl_username and "
                          f"kafka.sasl_password (or {env_name('sasl_username')} / {env_name('sasl_password')})")
    return settings


async def ensure_topics(settings: KafkaSettings, names: Iterable[str], *, compacted: Iterable[str] = (),
                        partitions: int | None = None, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the ones it created.

    Faust does not create source topics, and a worker must not race its producer to auto-creation
    (which would use the broker's default partition count), so every runner calls this first.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    names = list(dict.fromkeys(names))
    compacted = set(compacted)
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        if not settings.create_topics:
            raise ConfigError(f"topics {', '.join(missing)} do not exist and kafka.create_topics = false")
        new = [NewTopic(name, partitions or settings.partitions, settings.replication_factor,
                        topic_configs=CHECKPOINT_TOPIC_CONFIG if name in compacted else {}) for name in missing]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            response = None
        for error in _topic_errors(response):
            code, name, message = error
            if code not in (0, 36):  # 36: created by someone else meanwhile
                raise RuntimeError(f"could not create topic {name}: error {code} {message}")
        await _wait_for_metadata(admin, missing, timeout)
        return missing
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[int, str, str]]:
    errors = []
    for entry in getattr(response, "topic_errors", None) or []:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else ""
        errors.append((code, name, message))
    return errors


async def _wait_for_metadata(admin: Any, names: list[str], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if set(names) <= set(await admin.list_topics()):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topics {', '.join(names)} were created but never appeared in the metadata")
        await asyncio.sleep(0.1)


async def partitions_for(consumer: Any, topic: str, timeout: float = 10.0) -> list[int]:
    """The partition numbers of ``topic``, waiting for metadata; an error if the topic does not exist."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"topic {topic!r} does not exist on {consumer._client._bootstrap_servers}")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)


async def read_topic(settings: KafkaSettings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end when called, without a consumer group or commits."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # earliest: should the broker be slow to answer the seek, a reset still goes to the start, not the end.
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50, max_partition_fetch_bytes=32 << 20)
    async with running(consumer):
        tps = [TopicPartition(topic, p) for p in await partitions_for(consumer, topic)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += [m for m in batch if m.offset < end[TopicPartition(m.topic, m.partition)]]
        return records


async def keyed_records_newest_first(reader: Any, tp: Any, key: bytes) -> AsyncIterator[tuple[int, bytes]]:
    """The records of ``tp`` (a compacted checkpoints partition) with ``key``, newest first: ``(offset, value)``.

    The compacted topic keeps the newest record per key (and, until compaction runs, older ones),
    so the newest is usually among the last few: read backwards in growing steps, and further back
    only when the caller asks for more.
    """
    reader.assign([tp])
    begin = (await reader.beginning_offsets([tp]))[tp]
    stop = (await reader.end_offsets([tp]))[tp]
    step = 4
    while stop > begin:
        start = max(begin, stop - step)
        reader.seek(tp, start)
        found: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 60
        while await reader.position(tp) < stop:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading checkpoints from {tp} took more than 60 s")
            batch = await reader.getmany(tp, timeout_ms=500)
            found += [(m.offset, m.value) for m in batch.get(tp, []) if m.offset < stop and m.key == key]
        for candidate in sorted(found, key=lambda item: -item[0]):
            yield candidate
        stop, step = start, step * 8
