"""The value parsers every configuration table shares, and :class:`ConfigError`.

Each parser takes a raw TOML value and returns it typed, or raises ``TypeError`` with what is
allowed; :func:`_parse` turns that into a :class:`ConfigError` naming the key. The model table
(:mod:`tripwire.config`), the service tables (:mod:`tripwire.config_tables`), ``[capacity]``,
``[retrain]`` and ``[sinks]`` build on them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tripwire.detectors import registry
from tripwire.thresholds import Threshold

# key -> (parser, default, description): how every table declares its keys (the README's tables mirror them).
KeySpec = dict[str, tuple[Callable[[Any], Any], Any, str]]


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""


def _positive_int(value: Any) -> int:
    if type(value) is not int or value <= 0:
        raise TypeError("must be a positive integer")
    return value


def _is_finite_number(value: Any) -> bool:
    """An int or a finite float: TOML allows nan and inf, which no setting means."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _non_negative_number(value: Any) -> float:
    if not _is_finite_number(value) or value < 0:
        raise TypeError("must be a number >= 0 and finite")
    return float(value)


def _probability(value: Any) -> float:
    if not _is_finite_number(value) or not 0 < value < 1:
        raise TypeError("must be a number strictly between 0 and 1")
    return float(value)


def _non_negative_int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError("must be an integer >= 0")
    return value


def _string(value: Any) -> str:
    if type(value) is not str or not value:
        raise TypeError("must be a non-empty string")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not all(type(item) is str for item in value):
        raise TypeError("must be a list of strings")
    return tuple(value)


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise TypeError(f"must be one of {', '.join(repr(a) for a in allowed)}")
        return value

    return check



def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError("must be true or false")
    return value


def _positive_number(value: Any) -> float:
    if not _is_finite_number(value) or value <= 0:
        raise TypeError("must be a number > 0 and finite")
    return float(value)



def _parse(parser: Callable[[Any], Any], value: Any, label: str) -> Any:
    try:
        return parser(value)
    except TypeError as error:
        raise ConfigError(f"{label} {error}, got {value!r}") from None



def _table(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{label} must be a table, got {value!r}")
    return value



def _table_with_defaults(raw: Any, keys: KeySpec, name: str,
                         where: str) -> dict[str, Any]:
    """A settings table ([kafka], [worker]) with every key present, defaults filled in."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{name}' must be a table")
    values = {key: default for key, (_parser, default, _doc) in keys.items()}
    for key, value in raw.items():
        if key not in keys:
            raise ConfigError(f"{where}: {name}.{key}: unknown key; allowed: {', '.join(keys)}")
        values[key] = _parse(keys[key][0], value, f"{where}: {name}.{key}")
    return values


def _threshold(spec: Any, detector: str, label: str) -> Threshold:
    if detector not in registry.known_statistics():
        raise ConfigError(f"{label}: unknown detector {detector!r}; allowed: {', '.join(registry.known_statistics())}")
    spec = _table(spec, label)
    base = registry.default_threshold(detector)
    for key, value in spec.items():
        if key not in ("warning", "critical"):
            raise ConfigError(f"{label}.{key}: unknown key; allowed: warning, critical")
        if value is not False and not _is_finite_number(value):
            raise ConfigError(f"{label}.{key} must be a finite number (or false to switch that level off), "
                              f"got {value!r}")
    def level(key: str) -> float | None:
        value = spec.get(key, base.warning if key == "warning" else base.critical)
        return None if value is False else value

    threshold = Threshold(level("warning"), level("critical"), base.direction)
    warning, critical = threshold.warning, threshold.critical
    # Critical must be the worse level, else a value past it is critical before it is ever a warning.
    if warning is not None and critical is not None and (
            warning > critical if base.direction == "above" else warning < critical):
        order = "at most" if base.direction == "above" else "at least"
        raise ConfigError(f"{label}: warning {warning} must be {order} critical {critical} ({detector} alerts on "
                          f"values {base.direction} the limit; set both levels if you move one)")
    return threshold
