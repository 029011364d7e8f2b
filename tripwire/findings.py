"""The findings a model's monitor judges when a window closes, one builder per signal family.

Each builder reads a folded detector's result, resets the detector for the next window, records
the window's statistics in ``stats`` (what the window event and the report show) and returns the
findings for the alert policy to decide on. :func:`data_window_findings` and
:func:`performance_window_findings` call them for every detector of a monitor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from tripwire.alerts import AlertPolicy, Finding
from tripwire.config import ModelConfig
from tripwire.detectors.distribution import CategoricalDrift, NumericDrift
from tripwire.detectors.estimated import ConfidenceEstimate, MulticlassConfidenceEstimate
from tripwire.detectors.fairness import FairnessWindow
from tripwire.detectors.multiple_testing import benjamini_hochberg, bonferroni
from tripwire.detectors.quality import FeatureQuality
from tripwire.detectors.serving import ServingWindow
from tripwire.statistic_keys import statistic_key

if TYPE_CHECKING:
    from tripwire.monitor import ModelMonitor

# Metrics where a larger value is worse; for the others a smaller value is worse.
ERROR_METRICS = frozenset({"mae", "rmse", "mape", "log_loss"})
QUALITY_CHECKS = ("missing_rate", "type_error_rate", "out_of_range_rate", "unseen_rate")
# Per-class statistics of a multi-class performance window, drawn in the report as context.
PER_CLASS_STATS = ("precision", "recall")
UNATTRIBUTED = "*"  # the model of a finding about the stream rather than one model


def degradation(metric: str, current: float, baseline: float) -> float:
    """How much worse than the baseline, as a fraction of it (absolute when the baseline is 0)."""
    worse = current - baseline if metric in ERROR_METRICS else baseline - current
    return worse / abs(baseline) if baseline else worse


def data_window_findings(monitor: ModelMonitor, start: float, end: float, stats: dict[str, Any]) -> list[Finding]:
    """The quality, drift, estimate and serving findings of ``monitor``'s folded data window; its detectors are reset.

    Only the findings ``monitor.policy`` would act on are built (see :meth:`AlertPolicy.would_act`):
    most of a window's signals are quiet, and a finding's message and evidence cost more than its check.
    """
    config, policy = monitor.config, monitor.policy
    findings: list[Finding] = []
    feature_drafts, pvalues = [], []
    for name in monitor.monitored_features:
        if name in monitor.quality:
            findings += quality_findings(config, monitor.reference, name, monitor.quality[name], start, end, stats,
                                         policy)
        if name in monitor.drift:
            draft, pvalue = drift_finding(config, monitor.drift[name], "data_drift", f"feature:{name}", start, end,
                                          stats)
            if draft is not None:
                feature_drafts.append(draft)
                pvalues.append(pvalue)
    findings += significant(config, feature_drafts, pvalues, policy)

    if config.enabled("drift", "prediction"):
        draft, pvalue = drift_finding(config, monitor.prediction_drift, "prediction_drift", "prediction", start, end,
                                      stats)
        findings += significant(config, [draft], [pvalue], policy) if draft else []
    if monitor.score_drift is not None and config.enabled("drift", "score"):
        draft, pvalue = drift_finding(config, monitor.score_drift, "prediction_drift", "score", start, end, stats)
        findings += significant(config, [draft], [pvalue], policy) if draft else []
    if monitor.class_score_drift:
        findings += class_score_findings(config, monitor.class_names, monitor.class_score_drift, start, end, stats,
                                         policy)
    if monitor.estimate is not None:
        findings += estimate_findings(config, monitor.reference, monitor.estimate, monitor.estimated_metrics, start,
                                      end, stats, policy)
    if config.enabled("serving", "serving"):
        findings += serving_findings(config, monitor.serving, start, end, stats, policy)
    return findings


def performance_window_findings(monitor: ModelMonitor, start: float, end: float, n: int,
                                stats: dict[str, Any]) -> list[Finding]:
    """The performance and fairness findings of ``monitor``'s folded performance window; its windows are reset."""
    config = monitor.config
    findings: list[Finding] = []
    if config.enabled("performance"):
        result = monitor.performance.result()
        findings += baseline_findings(config, monitor.reference, result, monitor.metrics, n, start, end, stats,
                                      estimated=False)
        if monitor.multiclass:
            for cls in monitor.class_names:
                for metric in PER_CLASS_STATS:
                    stats[statistic_key(f"class:{cls}", metric)] = result[f"{metric}:{cls}"]
    monitor.performance.reset()
    for attribute, window in monitor.fairness.items():
        findings += fairness_findings(config, attribute, window, start, end, stats)
    return findings


def change_findings(config: ModelConfig, streams: Iterable[str], hits: dict[str, int], start: float, end: float,
                    n: int, stats: dict[str, Any]) -> list[Finding]:
    """Per change stream, how often its detector alarmed over a performance window."""
    for stream, count in hits.items():
        stats[statistic_key(f"change:{stream}", "changes")] = count
    findings = []
    for stream in streams:
        method = config.change_method
        findings.append(Finding(
            model=config.name, kind="concept_drift" if stream == "error" else "data_drift",
            signal=f"change:{stream}", detector=method, value=hits.get(stream, 0),
            threshold=config.threshold(method, f"change:{stream}"), window_start=start, window_end=end,
            n=n, message=f"{method} on the {stream} stream of {config.name}",
        ))
    return findings


def change_alarm_finding(config: ModelConfig, stream: str, n: int, start: float, ts: float) -> Finding:
    """A change detector's alarm on ``stream`` after ``n`` values, in the window that began at ``start``."""
    kind = "concept_drift" if stream == "error" else ("data_drift" if stream.startswith("feature:") else "prediction_drift")
    method = config.change_method
    return Finding(
        model=config.name, kind=kind, signal=f"change:{stream}", detector=method, value=1,
        threshold=config.threshold(method, f"change:{stream}"), window_start=start, window_end=ts, n=n,
        message=f"{method} detected a change in the {stream} stream of {config.name} after {n} values",
    )


def quality_findings(config: ModelConfig, reference: dict[str, Any], name: str, quality: FeatureQuality,
                     start: float, end: float, stats: dict[str, Any], policy: AlertPolicy | None = None) -> list[Finding]:
    """``policy``: build only the findings it would act on (None: all of them)."""
    result = quality.result()
    quality.reset()
    signal = f"feature:{name}"
    baseline_missing = reference["features"][name].get("missing_rate", 0.0)
    findings = []
    for check in QUALITY_CHECKS:
        rate = result[check]
        if rate is None:
            continue
        stats[statistic_key(signal, check)] = rate
        value = rate - baseline_missing if check == "missing_rate" else rate
        threshold = config.threshold(check, signal)
        if policy is not None and not policy.would_act(config.name, signal, check, result["n"], value, threshold):
            continue
        evidence = {"rate": rate}
        if check == "unseen_rate" and result["unseen_examples"]:
            evidence["examples"] = result["unseen_examples"]
        findings.append(Finding(
            model=config.name, kind="data_quality", signal=signal, detector=check, value=value,
            threshold=threshold, window_start=start, window_end=end,
            n=result["n"], evidence=evidence,
            message=f"{check.replace('_', ' ')} of {name} is {rate:.2%} over {result['n']} values",
        ))
    return findings


def drift_finding(config: ModelConfig, detector: NumericDrift | CategoricalDrift, kind: str, signal: str,
                  start: float, end: float, stats: dict[str, Any]) -> tuple[dict[str, Any] | None, float | None]:
    """The fields of the drift finding (all but ``significant`` and ``message``: see :func:`significant`) and its p-value."""
    result = detector.result()
    n = result["n"]
    # The window's histogram on the reference bins (a list, not a scalar): the report draws it.
    fractions = [count / n for count in detector.counts.tolist()] if n else []
    detector.reset()
    if n == 0:
        return None, None
    statistic = config.drift_statistic
    if result.get(statistic) is None:
        statistic = "psi"  # Wasserstein has no meaning between categories
    pvalue = result.get("ks_pvalue", result.get("chi2_pvalue"))
    effects = {k: result[k] for k in ("psi", "js", "wasserstein") if result.get(k) is not None}
    for key, effect in effects.items():
        stats[statistic_key(signal, key)] = effect
    stats[statistic_key(signal, "pvalue")] = pvalue
    stats[statistic_key(signal, "fractions")] = fractions
    draft = dict(
        model=config.name, kind=kind, signal=signal, detector=statistic, value=result[statistic],
        threshold=config.threshold(statistic, signal), window_start=start, window_end=end, n=n,
        evidence={"pvalue": pvalue, "top_bins": result["top_bins"], **effects},
    )
    return draft, pvalue


def _drift_message(draft: dict[str, Any]) -> str:
    statistic, value, n = draft["detector"], draft["value"], draft["n"]
    name = draft["signal"].removeprefix("feature:")
    return (f"{statistic.upper() if statistic != 'wasserstein' else 'Wasserstein'} of {name} is {value:.3g} "
            f"over {n} values (p = {draft['evidence']['pvalue']:.2g})")


def significant(config: ModelConfig, drafts: list[dict[str, Any]], pvalues: list[float | None],
                policy: AlertPolicy | None = None) -> list[Finding]:
    """The drift findings of ``drafts`` (:func:`drift_finding`), each significant or not.

    A drift must be large (effect size) and not chance (p-value after multiple-testing correction).
    ``policy``: build only the findings it would act on (None: all of them).
    """
    if not drafts:
        return []
    correction = config.drift_correction
    alpha = config.drift_alpha
    if correction == "benjamini-hochberg":
        passed = benjamini_hochberg(pvalues, alpha)
    elif correction == "bonferroni":
        passed = bonferroni(pvalues, alpha)
    else:
        passed = [p is not None and p <= alpha for p in pvalues]
    return [Finding(**draft, message=_drift_message(draft), significant=ok) for draft, ok in zip(drafts, passed)
            if policy is None or policy.would_act(draft["model"], draft["signal"], draft["detector"], draft["n"],
                                                  draft["value"], draft["threshold"], ok)]


def class_score_findings(config: ModelConfig, classes: Sequence[str], detectors: Sequence[NumericDrift],
                         start: float, end: float, stats: dict[str, Any],
                         policy: AlertPolicy | None = None) -> list[Finding]:
    """Drift of each class's probability (multi-class), corrected for testing one signal per class."""
    drafts, pvalues = [], []
    for position, detector in enumerate(detectors):
        signal = f"score:{classes[position]}"
        if not config.enabled("drift", signal):
            continue
        draft, pvalue = drift_finding(config, detector, "prediction_drift", signal, start, end, stats)
        if draft is not None:
            drafts.append(draft)
            pvalues.append(pvalue)
    return significant(config, drafts, pvalues, policy)


def estimate_findings(config: ModelConfig, reference: dict[str, Any],
                      estimate: ConfidenceEstimate | MulticlassConfidenceEstimate, metrics: Iterable[str],
                      start: float, end: float, stats: dict[str, Any], policy: AlertPolicy | None = None) -> list[Finding]:
    result = estimate.result()
    estimate.reset()
    return baseline_findings(config, reference, result, metrics, result["n"], start, end, stats, estimated=True,
                             policy=policy)


def baseline_findings(config: ModelConfig, reference: dict[str, Any], result: dict[str, Any], metrics: Iterable[str],
                      n: int, start: float, end: float, stats: dict[str, Any], *, estimated: bool,
                      policy: AlertPolicy | None = None) -> list[Finding]:
    """Each metric's degradation against the reference baseline: realized, or estimated before labels.

    ``policy``: build only the findings it would act on (None: all of them).
    """
    family, kind = ("estimated", "estimated_performance") if estimated else ("performance", "performance")
    baseline = reference["baseline"]
    findings = []
    for metric in metrics:
        detector = f"estimated_{metric}" if estimated else metric
        current, base = result.get(detector), baseline.get(metric)
        signal = f"{family}:{metric}"
        stats[statistic_key(signal, detector)] = current
        if current is None or base is None or not config.enabled(family, signal):
            continue
        worse = degradation(metric, current, base)
        threshold = config.threshold(detector, signal)
        if policy is not None and not policy.would_act(config.name, signal, detector, n, worse, threshold):
            continue
        if estimated:
            evidence = {"estimated": current, "baseline": base}
            message = (f"estimated {metric} of {config.name} (from scores, before labels) is {current:.4g} "
                       f"vs baseline {base:.4g}")
        else:
            evidence = {"current": current, "baseline": base}
            message = (f"{metric} of {config.name} is {current:.4g} vs baseline {base:.4g} "
                       f"({worse:+.1%} worse) over {n} labelled predictions")
        findings.append(Finding(
            model=config.name, kind=kind, signal=signal, detector=detector, value=worse,
            threshold=threshold, window_start=start, window_end=end, n=n,
            evidence=evidence, message=message,
        ))
    return findings


def serving_findings(config: ModelConfig, serving: ServingWindow, start: float, end: float,
                     stats: dict[str, Any], policy: AlertPolicy | None = None) -> list[Finding]:
    """``policy``: build only the findings it would act on (None: all of them)."""
    result = serving.result()
    serving.reset()
    findings = []
    for key in ("latency_p50", "latency_p95", "latency_p99", "throughput_per_s"):
        stats[statistic_key("serving", key)] = result[key]
    for key, unit in (("latency_p95", "ms"), ("latency_p99", "ms"), ("throughput_per_s", "/s")):
        value = result[key]
        threshold = config.threshold(key, "serving")
        if value is None or (threshold.warning is None and threshold.critical is None):
            continue
        if policy is not None and not policy.would_act(config.name, "serving", key, result["n"], value, threshold):
            continue
        findings.append(Finding(
            model=config.name, kind="infrastructure", signal="serving", detector=key, value=value,
            threshold=threshold, window_start=start, window_end=end, n=result["n"],
            evidence={k: result[k] for k in ("latency_p50", "latency_p95", "latency_p99", "throughput_per_s")},
            message=f"{key.replace('_', ' ')} of {config.name} is {value:.4g} {unit} over {result['n']} requests",
        ))
    return findings


def fairness_findings(config: ModelConfig, attribute: str, window: FairnessWindow, start: float, end: float,
                      stats: dict[str, Any]) -> list[Finding]:
    result = window.result()
    window.reset()
    signal = f"fairness:{attribute}"
    if not config.enabled("fairness", signal):
        return []
    findings = []
    for metric in ("demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio"):
        value = result.get(metric)
        stats[statistic_key(signal, metric)] = value
        if value is None:
            continue
        findings.append(Finding(
            model=config.name, kind="fairness", signal=signal, detector=metric, value=value,
            threshold=config.threshold(metric, signal), window_start=start, window_end=end,
            n=result.get("min_group_n") or 0, evidence={"groups": result["groups"]},
            message=f"{metric.replace('_', ' ')} across {attribute} is {value:.3g} "
                    f"(smallest group {result.get('min_group_n')} labelled predictions)",
        ))
    return findings
