"""The names of a window's statistics: how a ``stats`` key splits into the signal and statistic.

A window's ``stats`` maps ``<signal>.<statistic>`` to a value (``feature:weight.psi``,
``serving.latency_p95``); the performance, estimated-performance and change streams are keyed by
the signal alone, and the label bookkeeping by the statistic alone. The report, the Prometheus
exporter and the status page read the keys through :func:`split_statistic`, so they name a
signal and a statistic the way alerts do; the engine writes them through :func:`statistic_key`.
"""

from __future__ import annotations

__all__ = ["split_statistic", "statistic_key"]


def split_statistic(key: str) -> tuple[str, str]:
    """A window ``stats`` key as the (signal, statistic) pair that alerts and metrics use.

    ``signal`` is the alert's ``signal``; ``statistic`` is the alert's ``detector`` except for the
    change streams (``changes``: alarms per window) and the label bookkeeping (signal ``labels``).

    >>> split_statistic("feature:weight.psi"), split_statistic("performance:mae")
    (('feature:weight', 'psi'), ('performance:mae', 'mae'))
    >>> split_statistic("estimated:f1"), split_statistic("fairness:group.disparate_impact_ratio")
    (('estimated:f1', 'estimated_f1'), ('fairness:group', 'disparate_impact_ratio'))
    >>> split_statistic("serving.latency_p95"), split_statistic("change:error"), split_statistic("labels_pending")
    (('serving', 'latency_p95'), ('change:error', 'changes'), ('labels', 'labels_pending'))
    """
    if key.startswith("performance:"):
        return key, key.removeprefix("performance:")
    if key.startswith("estimated:"):
        return key, "estimated_" + key.removeprefix("estimated:")
    if key.startswith("change:"):
        return key, "changes"
    signal, dot, statistic = key.rpartition(".")
    return (signal, statistic) if dot else ("labels", key)


def statistic_key(signal: str, statistic: str) -> str:
    """The window ``stats`` key of ``statistic`` on ``signal``: the inverse of :func:`split_statistic`.

    >>> statistic_key("feature:weight", "psi"), statistic_key("performance:mae", "mae")
    ('feature:weight.psi', 'performance:mae')
    >>> statistic_key("serving", "latency_p95"), statistic_key("change:error", "changes")
    ('serving.latency_p95', 'change:error')
    >>> all(statistic_key(*split_statistic(key)) == key for key in ("estimated:f1", "class:a.recall", "labels_pending"))
    True
    """
    if signal.startswith(("performance:", "estimated:", "change:")):
        return signal
    if signal == "labels":
        return statistic
    return f"{signal}.{statistic}"
