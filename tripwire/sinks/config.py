"""The ``[sinks]`` table: where alerts go besides the alerts topic, and how hard to try.

Shared delivery keys sit in ``[sinks]`` and apply to every sink; a sink's own table may override
them::

    [sinks]
    buffer_alerts = 10000
    [[sinks.alertmanager]]
    url = "http://alertmanager:9093"
    [[sinks.webhook]]
    url = "https://hooks.slack.com/services/..."
    headers = { Authorization = "Bearer ..." }
    statuses = ["firing", "escalated"]

``url`` and ``headers`` values may name environment variables as ``${NAME}``, expanded when the
config is read, so a token never has to sit in the file::

    headers = { Authorization = "Bearer ${ALERT_WEBHOOK_TOKEN}" }

A wrong key or value raises :class:`~tripwire.config_values.ConfigError` naming it (``sinks.webhook[0].url``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

from tripwire.config_values import ConfigError, _bool, _non_negative_number, _parse, _positive_int, _positive_number

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STATUSES = ("firing", "escalated", "resolved", "reference_changed")
SEVERITIES = ("warning", "critical")


def _statuses(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not all(item in STATUSES for item in value):
        raise TypeError(f"must be a list of {', '.join(repr(s) for s in STATUSES)}")
    return tuple(value)


def _severity(value: Any) -> str:
    if value not in SEVERITIES:
        raise TypeError(f"must be one of {', '.join(repr(s) for s in SEVERITIES)}")
    return value


def _url(value: Any) -> str:
    if type(value) is not str or not value.startswith(("http://", "https://")):
        raise TypeError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _string_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise TypeError("must be a table of name = \"string\"")
    return dict(value)


# key -> (parser, default, description); valid in [sinks] (for every sink) and in each sink's table.
DELIVERY_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "statuses": (_statuses, STATUSES, "what to route: firing, escalated (a firing alert raised to critical), "
                                      "resolved, reference_changed (alerts closed by a new model version)"),
    "min_severity": (_severity, "warning", "route only alerts at least this severe (warning or critical)"),
    "buffer_alerts": (_positive_int, 10_000, "alerts kept while the receiver is unreachable; the oldest are dropped past it"),
    "timeout_seconds": (_positive_number, 10.0, "HTTP timeout of one delivery attempt"),
    "retry_seconds": (_positive_number, 1.0, "first wait after a failed attempt; doubles up to max_retry_seconds"),
    "max_retry_seconds": (_positive_number, 300.0, "longest wait between attempts"),
}
ALERTMANAGER_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "url": (_url, None, "Alertmanager base URL; alerts go to <url>/api/v2/alerts (required)"),
    "labels": (_string_table, {}, "extra labels on every alert (e.g. team = \"ml\")"),
    "generator_url": (_url, None, "link shown with each alert (e.g. the worker's /status page)"),
    "resend_seconds": (_non_negative_number, 60.0, "re-send open alerts this often so Alertmanager keeps them "
                                                   "active (as Prometheus does); 0 = never"),
}
WEBHOOK_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "url": (_url, None, "where the JSON is POSTed (required); never logged beyond its host"),
    "headers": (_string_table, {}, "extra HTTP headers (e.g. Authorization); never logged"),
    "text": (_bool, True, "include the Slack-compatible one-line `text` field"),
}
SINK_KINDS = {"alertmanager": ALERTMANAGER_KEYS, "webhook": WEBHOOK_KEYS}


def parse_sinks(raw: Any, where: str = "config") -> dict[str, list[dict[str, Any]]]:
    """``{"alertmanager": [settings, ...], "webhook": [...]}``, every key filled in with its default."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'sinks' must be a table")
    shared = {key: default for key, (_parser, default, _doc) in DELIVERY_KEYS.items()}
    for key, value in raw.items():
        if key in SINK_KINDS:
            continue
        if key not in DELIVERY_KEYS:
            allowed = ", ".join([*DELIVERY_KEYS, *SINK_KINDS])
            raise ConfigError(f"{where}: sinks.{key}: unknown key; allowed: {allowed}")
        shared[key] = _parse(DELIVERY_KEYS[key][0], value, f"{where}: sinks.{key}")
    sinks: dict[str, list[dict[str, Any]]] = {}
    for kind, keys in SINK_KINDS.items():
        entries = raw.get(kind, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: sinks.{kind} must be an array of tables ([[sinks.{kind}]])")
        sinks[kind] = [_sink(entry, keys, shared, f"{where}: sinks.{kind}[{index}]")
                       for index, entry in enumerate(entries)]
    return sinks


def _sink(entry: Any, keys: dict[str, tuple[Callable[[Any], Any], Any, str]], shared: dict[str, Any],
          label: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{label} must be a table")
    allowed = {**DELIVERY_KEYS, **keys}
    values = {**shared, **{key: default for key, (_parser, default, _doc) in keys.items()}}
    for key, value in entry.items():
        if key not in allowed:
            raise ConfigError(f"{label}.{key}: unknown key; allowed: {', '.join(allowed)}")
        values[key] = _parse(allowed[key][0], value, f"{label}.{key}")
    if values["url"] is None:
        raise ConfigError(f"{label}.url is required")
    values["url"] = _expand(values["url"], f"{label}.url")
    if "headers" in values:
        values["headers"] = {name: _expand(value, f"{label}.headers.{name}") for name, value in values["headers"].items()}
    return values


def _expand(value: str, label: str, environ: Mapping[str, str] | None = None) -> str:
    """``${NAME}`` -> the environment variable's value; an unset one is an error naming the key (not the value)."""
    environ = os.environ if environ is None else environ

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{label}: environment variable {name} is not set")
        return environ[name]

    return _VARIABLE.sub(variable, value)
