"""Alert thresholds: a warning and a critical level per detector statistic, and the built-in defaults.

A configuration overrides them per model (``thresholds``) or per signal (``signals``); see
:meth:`tripwire.config.ModelConfig.threshold`. A detector family registered in
:mod:`tripwire.detectors.registry` brings its own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    warning: float | None
    critical: float | None
    direction: str = "above"  # "below" for ratios where smaller is worse

    def severity(self, value: float) -> str | None:
        # (no helper function: this runs for every finding of every window)
        critical, warning = self.critical, self.warning
        if self.direction == "above":
            if critical is not None and value >= critical:
                return "critical"
            if warning is not None and value >= warning:
                return "warning"
            return None
        if critical is not None and value <= critical:
            return "critical"
        if warning is not None and value <= warning:
            return "warning"
        return None

    def limit(self, severity: str) -> float | None:
        return self.critical if severity == "critical" else self.warning


# Built-in thresholds per detector. Relative degradations are fractions of the baseline metric.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "psi": Threshold(0.1, 0.25),
    "js": Threshold(0.1, 0.2),
    "wasserstein": Threshold(0.1, 0.3),
    "missing_rate": Threshold(0.05, 0.2),
    "type_error_rate": Threshold(0.01, 0.05),
    "out_of_range_rate": Threshold(0.05, 0.2),
    "unseen_rate": Threshold(0.01, 0.05),
    "mae": Threshold(0.1, 0.25),
    "rmse": Threshold(0.1, 0.25),
    "mape": Threshold(0.1, 0.25),
    "log_loss": Threshold(0.1, 0.25),
    "accuracy": Threshold(0.05, 0.1),
    "precision": Threshold(0.05, 0.1),
    "recall": Threshold(0.05, 0.1),
    "f1": Threshold(0.05, 0.1),
    "macro_precision": Threshold(0.05, 0.1),
    "macro_recall": Threshold(0.05, 0.1),
    "macro_f1": Threshold(0.05, 0.1),
    "weighted_f1": Threshold(0.05, 0.1),
    "roc_auc": Threshold(0.05, 0.1),
    "estimated_accuracy": Threshold(0.05, 0.1),
    "estimated_f1": Threshold(0.05, 0.1),
    "estimated_macro_f1": Threshold(0.05, 0.1),
    "demographic_parity_difference": Threshold(0.1, 0.2),
    "equalized_odds_difference": Threshold(0.1, 0.2),
    "disparate_impact_ratio": Threshold(0.8, 0.6, "below"),
    "latency_p95": Threshold(250.0, 1000.0),
    "latency_p99": Threshold(None, None),
    "throughput_per_s": Threshold(None, None, "below"),
    "adwin": Threshold(1, None),
    "page_hinkley": Threshold(1, None),
    "rejection_rate": Threshold(0.01, 0.05),
    "unmatched_label_rate": Threshold(0.1, 0.5),
    "label_coverage": Threshold(None, None, "below"),
    "cpu_percent": Threshold(85.0, 95.0),
    "memory_percent": Threshold(85.0, 95.0),
    "event_loop_lag_ms": Threshold(250.0, 1000.0),
    "consumer_lag_growth": Threshold(10_000, 100_000),
    "unpublished": Threshold(1, 1000),
}
