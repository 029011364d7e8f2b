"""Watching ``models:/<name>@<alias>`` references: :class:`AliasWatcher` notices when an alias moves."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from tripwire.reference import (
    ReferenceError,
)
from tripwire.sinks.delivery import short_error
from tripwire.tracking.references import _MODELS_URI, ResolvedReference, _client, _resolve_version

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from tripwire.config import MonitorConfig
    from tripwire.engine import Engine

log = logging.getLogger("tripwire.tracking")



# -- monitoring time: watching aliases --------------------------------------------------------
@dataclass(frozen=True)
class ReferenceChange:
    """An alias now points at another model version; ``reference`` is that version's profile."""

    model: str  # the monitored model (as named in the config and the events)
    alias_uri: str  # models:/<name>@<alias>
    uri: str  # models:/<name>/<version>, the pinned reference
    version: str
    previous_version: str | None
    run_id: str
    reference: dict[str, Any]


class AliasWatcher:
    """Notices when a ``models:/<name>@<alias>`` reference moves to another model version.

    :meth:`check` is synchronous and cheap: before ``interval_seconds`` have passed since the last
    look it returns ``[]`` without any I/O; then it asks the registry once per alias, and downloads a
    reference only for an alias that moved. From asyncio (e.g. a Faust timer)::

        changes = await loop.run_in_executor(None, watcher.check)
        for event in watcher.apply(engine, changes):   # on the loop, between events
            await alerts_topic.send(key=event["model"], value=event)

    A registry that cannot be reached, or a new version without a tripwire reference, is logged as
    a warning and the current reference stays; the next check tries again.
    """

    def __init__(self, aliases: Mapping[str, str], *, tracking_uri: str | None = None, interval_seconds: float = 60.0,
                 versions: Mapping[str, str | None] | None = None, clock: Callable[[], float] = time.monotonic,
                 client: MlflowClient | None = None) -> None:
        for model, uri in aliases.items():
            match = _MODELS_URI.match(uri)
            if not match or match["alias"] is None:
                raise ValueError(f"{model}: {uri!r} is not a models:/<name>@<alias> URI")
        self.aliases = dict(aliases)
        self.tracking_uri = tracking_uri
        self.interval_seconds = float(interval_seconds)
        self.versions: dict[str, str | None] = {m: (versions or {}).get(m) for m in aliases}
        self._clock = clock
        self._client = client
        self._next_check = clock()  # the first check is due at once
        self._baseline = {m for m, v in self.versions.items() if v is not None}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: MonitorConfig, resolved: Mapping[str, ResolvedReference] | None = None,
                   **kwargs: Any) -> AliasWatcher | None:
        """A watcher for every model whose reference is an alias, or None when there is none.

        ``resolved`` (from :func:`resolve_config`) gives the versions the engine started with, so a
        move between start-up and the first check is still reported.
        """
        aliases = {m.name: m.reference for m in config.models
                   if (match := _MODELS_URI.match(m.reference)) and match["alias"] is not None}
        if not aliases:
            return None
        versions = {name: resolved[name].model_version for name in aliases if resolved and name in resolved}
        kwargs.setdefault("tracking_uri", config.mlflow.tracking_uri)
        kwargs.setdefault("interval_seconds", config.mlflow.alias_check_seconds)
        return cls(aliases, versions=versions, **kwargs)

    def due(self) -> bool:
        return self._clock() >= self._next_check

    def check(self, force: bool = False) -> list[ReferenceChange]:
        """The aliases that moved since the last check (none before the interval is up, unless forced)."""
        with self._lock:
            if not force and not self.due():
                return []
            self._next_check = self._clock() + self.interval_seconds
            changes = []
            for model, uri in self.aliases.items():
                change = self._check_one(model, uri)
                if change is not None:
                    changes.append(change)
            return changes

    def _check_one(self, model: str, uri: str) -> ReferenceChange | None:
        match = _MODELS_URI.match(uri)
        if match is None:
            raise ValueError(f"model {model}: {uri!r} is not a models:/<name>/<version or @alias> URI")
        name, alias = match["name"], match["alias"]
        previous = self.versions.get(model)
        try:
            client = self._client = self._client or _client(self.tracking_uri)
            version = client.get_model_version_by_alias(name, alias)
        except Exception as error:  # the registry is down or refused: try again next interval
            log.warning("cannot check %s for %s (%s: %s); keeping the current reference, next try in %.0f s",
                        uri, model, type(error).__name__, short_error(error), self.interval_seconds)
            return None
        current = str(version.version)
        if current == previous:
            return None
        if previous is None and model not in self._baseline:
            # No starting version was given (built without resolve_config): this look sets it.
            self._baseline.add(model)
            self.versions[model] = current
            return None
        try:
            resolved = _resolve_version(client, name, version, uri)
        except ReferenceError as error:
            self._warn_once(model, current, f"{uri} moved to version {current} but its reference cannot be used: "
                                            f"{error}; keeping the current reference")
            return None
        except Exception as error:
            log.warning("cannot load the reference of %s version %s (%s: %s); next try in %.0f s",
                        name, current, type(error).__name__, short_error(error), self.interval_seconds)
            return None
        self.versions[model] = current
        log.info("%s moved from version %s to %s: monitoring %s against %s", uri, previous, current, model,
                 resolved.pinned_uri)
        return ReferenceChange(model, uri, resolved.pinned_uri, current, previous, resolved.run_id or "",
                               resolved.reference)

    def _warn_once(self, model: str, version: str, message: str) -> None:
        if (model, version) not in self._warned:
            self._warned.add((model, version))
            log.warning(message)

    @staticmethod
    def apply(engine: Engine, changes: list[ReferenceChange]) -> list[dict[str, Any]]:
        """Swap the new references into the engine; returns the ``reference_changed`` events to publish."""
        return [engine.replace_reference(c.model, c.reference, c.uri, c.version) for c in changes]
