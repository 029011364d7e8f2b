"""Detector families: the built-in names, a small protocol for new ones, and their registry.

A new family is one module: a class with a :meth:`WindowDetector.judge` method, and one call to
:func:`register` with a :class:`Family` that names it, the window it judges (``data`` or
``performance``), the prefix of its signals and a built-in threshold per statistic. From then on,
without an edit elsewhere:

- a configuration may switch it (``detectors = {NAME = false}``), set its thresholds
  (``thresholds.STATISTIC``) and its signals (``signals."PREFIX:X"``);
- every model's :class:`~tripwire.monitor.ModelMonitor` builds one detector per model
  (:attr:`Family.build`), hands it each closed window, and passes its findings to the alert policy;
- its statistics reach the windows' ``stats`` (report, MLflow, status page) and ``/metrics``.

A detector keeps no state from one window to the next: the engine checkpoints the windows it
buffers, and a detector is rebuilt from config and reference on a restart.

>>> from tripwire.alerts import Finding
>>> class Crowded:
...     '''How many rows a data window has beyond the reference's size, as a share of it.'''
...     def __init__(self, config, reference):
...         self.config, self.size = config, reference["n"]
...     def judge(self, window: DataWindow) -> Verdict:
...         value = max(0, window.n - self.size) / self.size
...         signal = "crowd:rows"
...         finding = Finding(model=window.model, kind="data_quality", signal=signal, detector="crowd_excess",
...                           value=value, threshold=self.config.threshold("crowd_excess", signal),
...                           window_start=window.start, window_end=window.end, n=window.n,
...                           message=f"{value:.0%} more rows than the reference")
...         return Verdict(findings=[finding], stats={f"{signal}.crowd_excess": value})
>>> crowd = register(Family("crowd", "data", "crowd", {"crowd_excess": Threshold(0.5, 1.0)}, Crowded))
>>> "crowd" in family_names(), default_threshold("crowd_excess")
(True, Threshold(warning=0.5, critical=1.0, direction='above'))
>>> unregister("crowd")
>>> "crowd" in family_names()
False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol, Sequence

from tripwire.statistic_keys import split_statistic
from tripwire.thresholds import DEFAULT_THRESHOLDS, Threshold

if TYPE_CHECKING:  # pragma: no cover
    from tripwire.alerts import Finding
    from tripwire.config import ModelConfig
    from tripwire.join import Outcome

__all__ = ["BUILTIN_FAMILIES", "NAMED_SIGNALS", "PLAIN_SIGNALS", "DataWindow", "Family", "PerformanceWindow", "Verdict",
           "WindowDetector", "default_threshold", "detectors_for", "families", "family_names", "family_of_statistic",
           "judge_window", "known_statistics", "register", "signal_prefixes", "unregister"]

# The families built into the engine: the [detectors] switches every configuration knows.
BUILTIN_FAMILIES = ("drift", "quality", "change", "performance", "fairness", "estimated", "serving")
# Signals the built-in families raise: these, and PREFIX:NAME for each of NAMED_SIGNALS.
PLAIN_SIGNALS = ("prediction", "score", "serving")
NAMED_SIGNALS = ("feature", "score", "change", "performance", "estimated", "fairness")
# Prefixes of statistics keys that are not signals a family may claim (report groups, bookkeeping).
_RESERVED_PREFIXES = ("class", "labels", "stream")


@dataclass(frozen=True)
class DataWindow:
    """A closed data window as the engine buffered it: each list in arrival order."""

    model: str
    start: float  # event time of the window's first record (its aligned start for time windows)
    end: float  # latest event time in it
    n: int  # predictions and features records
    rows: Sequence[Mapping[str, Any]]  # the feature rows, of predictions and of features records
    predictions: Sequence[Any]  # every prediction (classes in the reference's form)
    scores: Sequence[Any]  # the scores given (a multi-class one: the probability vector in class order)
    latencies: Sequence[float | None]  # latency_ms of every prediction


@dataclass(frozen=True)
class PerformanceWindow:
    """A closed performance window: the labelled outcomes (prediction joined to its label)."""

    model: str
    start: float
    end: float
    n: int
    outcomes: Sequence[Outcome]


@dataclass(frozen=True)
class Verdict:
    """What a detector makes of one window.

    ``findings`` go to the alert policy (each with a ``signal`` ``PREFIX:NAME`` of its family and
    a ``detector`` that is one of its statistics); ``stats`` maps ``<signal>.<statistic>`` to a
    value (None when there is none), for the report, MLflow, the status page and ``/metrics``.
    """

    findings: Sequence[Finding] = ()
    stats: Mapping[str, float | None] = field(default_factory=dict)


class WindowDetector(Protocol):
    """One model's detector of a registered family: judges each closed window of its kind."""

    def judge(self, window: Any) -> Verdict:
        """The window's verdict: a :class:`DataWindow` or a :class:`PerformanceWindow`, as its family asks."""
        ...


@dataclass(frozen=True)
class Family:
    """A detector family: what the configuration, engine, report and exporter need to know of it."""

    name: str  # the [detectors] switch, and the report's group
    window: Literal["data", "performance"]  # the windows it judges
    signal_prefix: str  # its signals are PREFIX:NAME (the keys of [signals] it may be configured by)
    thresholds: Mapping[str, Threshold]  # statistic (an alert's detector) -> its built-in threshold
    # Called once per model with its config and reference: its detector, or None when it has nothing to watch.
    build: Callable[[ModelConfig, Mapping[str, Any]], WindowDetector | None]
    title: str = ""  # the report's group title (default: the name)


_registered: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make ``family`` known to the configuration and the engine; returns it.

    Register before the configuration is parsed (a module's import is the place). A name,
    signal prefix or statistic already taken is a ``ValueError``: two families never share one.
    """
    if family.window not in ("data", "performance"):
        raise ValueError(f"family {family.name!r}: window must be 'data' or 'performance', not {family.window!r}")
    if family.name in family_names():
        raise ValueError(f"detector family {family.name!r} is already known")
    if not family.signal_prefix or ":" in family.signal_prefix or "." in family.signal_prefix:
        raise ValueError(f"family {family.name!r}: signal_prefix must be a word without ':' or '.'")
    if family.signal_prefix in (*signal_prefixes(), *PLAIN_SIGNALS, *_RESERVED_PREFIXES):
        raise ValueError(f"family {family.name!r}: signal prefix {family.signal_prefix!r} is taken")
    if not family.thresholds:
        raise ValueError(f"family {family.name!r}: give at least one statistic with its threshold")
    taken = sorted(set(family.thresholds) & set(known_statistics()))
    if taken:
        raise ValueError(f"family {family.name!r}: statistics {', '.join(taken)} are taken")
    _registered[family.name] = family
    return family


def unregister(name: str) -> None:
    """Forget a registered family (a test's fixture); the built-in ones stay."""
    _registered.pop(name, None)


def families() -> tuple[Family, ...]:
    """The registered families, in the order they were registered."""
    return tuple(_registered.values())


def family_names() -> tuple[str, ...]:
    """Every [detectors] switch: the built-in families, then the registered ones."""
    return (*BUILTIN_FAMILIES, *_registered)


def signal_prefixes() -> tuple[str, ...]:
    """Every prefix of a PREFIX:NAME signal: the built-in ones, then the registered families'."""
    return (*NAMED_SIGNALS, *(family.signal_prefix for family in _registered.values()))


def family_of_statistic(statistic: str) -> Family | None:
    """The registered family that judges ``statistic``, if one does."""
    return next((family for family in _registered.values() if statistic in family.thresholds), None)


def known_statistics() -> tuple[str, ...]:
    """Every statistic a threshold may be set for: the built-in ones, then the registered families'."""
    return (*DEFAULT_THRESHOLDS, *(name for family in _registered.values() for name in family.thresholds))


def default_threshold(statistic: str) -> Threshold:
    """The built-in threshold of ``statistic``; a ``KeyError`` for a statistic nothing judges."""
    threshold = DEFAULT_THRESHOLDS.get(statistic)
    if threshold is not None:
        return threshold
    family = family_of_statistic(statistic)
    if family is None:
        raise KeyError(statistic)
    return family.thresholds[statistic]


def detectors_for(config: ModelConfig, reference: Mapping[str, Any]) -> list[tuple[Family, WindowDetector]]:
    """One detector per registered family that ``config`` leaves on and that has something to watch."""
    built = [(family, family.build(config, reference)) for family in _registered.values()
             if config.enabled(family.name)]
    return [(family, detector) for family, detector in built if detector is not None]


def judge_window(detectors: Sequence[tuple[Family, WindowDetector]], window: DataWindow | PerformanceWindow,
                 config: ModelConfig, stats: dict[str, Any]) -> list[Finding]:
    """Each detector's verdict on a closed window: its stats added to ``stats``, its findings returned.

    A signal the configuration switches off (``signals."PREFIX:X".enabled = false``) is dropped.
    """
    kind = "data" if isinstance(window, DataWindow) else "performance"
    findings: list[Finding] = []
    for family, detector in detectors:
        if family.window != kind:
            continue
        verdict = detector.judge(window)
        for key, value in verdict.stats.items():
            if config.enabled(family.name, split_statistic(key)[0]):
                stats[key] = value
        findings += [finding for finding in verdict.findings if config.enabled(family.name, finding.signal)]
    return findings
