"""The ``[capacity]`` table: the autoscaling rule's target, tolerance, stabilisation and bounds.

One table serves the three users of the rule: the advice on training runs (how many CPUs would
do), the capacity view of serving replicas and the monitor's own workers.

>>> settings = capacity_settings({"target_utilization": 0.5, "max_replicas": 4})
>>> settings.target_utilization, settings.tolerance, settings.max_replicas
(0.5, 0.1, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tripwire.config_values import (
    ConfigError,
    _non_negative_number,
    _positive_int,
    _positive_number,
    _table_with_defaults,
)


def _fraction(value: Any) -> float:
    if type(value) not in (int, float) or not 0 < value <= 1:
        raise TypeError("must be a number in (0, 1]")
    return float(value)


def _tolerance(value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value < 1:
        raise TypeError("must be a number in [0, 1)")
    return float(value)


# key -> (parser, default, description). The README's [capacity] table mirrors this.
CAPACITY_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "target_utilization": (_fraction, 0.7, "utilization (0-1) the rule sizes for: desired = ceil(current x utilization / target)"),
    "tolerance": (_tolerance, 0.1, "no change while |utilization / target - 1| <= tolerance (Kubernetes' default)"),
    "stabilization_seconds": (_non_negative_number, 300.0, "scale-down stabilisation: the highest recommendation of this "
                                                           "long (sample time) wins (Kubernetes' default 300 s)"),
    "window_seconds": (_positive_number, 60.0, "a replica counts while it sent a sample this recently; its "
                                                "utilization is the mean over this window"),
    "min_replicas": (_positive_int, 1, "never advise fewer replicas"),
    "max_replicas": (_positive_int, 10, "never advise more replicas (workers: also at most the input partitions)"),
    "low_utilization": (_fraction, 0.2, "training runs: the low mark of 'share of time under'"),
    "memory_risk": (_fraction, 0.9, "memory (or GPU memory) p95 at or above this is at risk of running out"),
}


@dataclass(frozen=True)
class CapacitySettings:
    target_utilization: float = 0.7
    tolerance: float = 0.1
    stabilization_seconds: float = 300.0
    window_seconds: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 10
    low_utilization: float = 0.2
    memory_risk: float = 0.9


def capacity_table(raw: Any, where: str = "config") -> dict[str, Any]:
    """The ``[capacity]`` table with every key present; a wrong key or value names it."""
    values = _table_with_defaults(raw, CAPACITY_KEYS, "capacity", where)
    if values["min_replicas"] > values["max_replicas"]:
        raise ConfigError(f"{where}: capacity.min_replicas ({values['min_replicas']}) is above "
                          f"capacity.max_replicas ({values['max_replicas']})")
    return values


def capacity_settings(raw: Any = None, where: str = "config") -> CapacitySettings:
    return CapacitySettings(**capacity_table(raw or {}, where))
