"""Alert policy: fire once, resolve once, cooldown, minimum samples, deterministic ids."""

from tripwire.alerts import AlertPolicy, Finding
from tripwire.config import Threshold


def finding(value, start, n=500):
    return Finding(model="m", kind="data_drift", signal="feature:x", detector="psi", value=value,
                   threshold=Threshold(0.1, 0.25), window_start=start, window_end=start + 60, n=n, message="psi")


def statuses(policy, values, n=500):
    out = []
    for i, value in enumerate(values):
        alert = policy.evaluate(finding(value, 1000.0 + 60 * i, n), model_version="1", reference="r", ts=1060.0 + 60 * i)
        out.append(None if alert is None else (alert["status"], alert["severity"]))
    return out


def test_fires_once_while_bad_and_resolves_after_good_windows():
    policy = AlertPolicy(min_samples=100, resolve_windows=2)
    assert statuses(policy, [0.0, 0.3, 0.4, 0.05, 0.3, 0.05, 0.05, 0.05]) == [
        None, ("firing", "critical"), None, None, None, None, ("resolved", "critical"), None]


def test_escalation_is_announced_once_and_keeps_the_incident():
    policy = AlertPolicy(min_samples=100, resolve_windows=1)
    alerts = [policy.evaluate(finding(v, 60.0 * i), model_version=None, reference=None, ts=60.0 * i)
              for i, v in enumerate([0.15, 0.2, 0.3, 0.15, 0.4, 0.0])]
    assert [(a["status"], a["severity"]) if a else None for a in alerts] == [
        ("firing", "warning"), None, ("firing", "critical"), None, None, ("resolved", "critical")]
    assert alerts[0]["incident_id"] == alerts[2]["incident_id"] == alerts[5]["incident_id"] == alerts[0]["alert_id"]


def test_cooldown_holds_back_a_new_incident():
    policy = AlertPolicy(min_samples=100, resolve_windows=1, cooldown_windows=2)
    assert statuses(policy, [0.2, 0.0, 0.2, 0.2, 0.2]) == [
        ("firing", "warning"), ("resolved", "warning"), None, None, ("firing", "warning")]


def test_small_windows_change_nothing():
    policy = AlertPolicy(min_samples=100)
    assert statuses(policy, [0.9, 0.9], n=99) == [None, None]


def test_ids_are_deterministic_and_resolution_points_to_its_incident():
    def run():
        policy = AlertPolicy(min_samples=1, resolve_windows=1)
        return [policy.evaluate(finding(v, 60.0 * i), model_version=None, reference=None, ts=60.0 * i)
                for i, v in enumerate([0.5, 0.0])]
    first, second = run(), run()
    assert first == second
    fired, resolved = first
    assert resolved["incident_id"] == fired["alert_id"] != resolved["alert_id"]


# -- would_act: the window judge builds only the findings the policy would act on ------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_THRESHOLDS = [Threshold(0.1, 0.25), Threshold(0.8, 0.6, "below"), Threshold(None, 0.5), Threshold(0.2, None, "below")]
_window_finding = st.tuples(st.sampled_from(["psi", "missing_rate"]), st.sampled_from(range(len(_THRESHOLDS))),
                            st.sampled_from([0.0, 0.1, 0.15, 0.25, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, float("nan")]),
                            st.sampled_from([50, 100, 500]), st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(0, 3), st.integers(1, 3), st.lists(st.lists(_window_finding, max_size=4), max_size=12))
def test_skipping_what_would_act_rejects_changes_nothing(cooldown, resolve, windows):
    """A policy fed only the findings would_act accepts gives the alerts and state of one fed them all."""
    every, judged = (AlertPolicy(min_samples=100, resolve_windows=resolve, cooldown_windows=cooldown) for _ in "ab")
    for i, window in enumerate(windows):
        for detector, t, value, n, significant in window:
            f = Finding(model="m", kind="data_drift", signal=f"feature:{t}", detector=detector, value=value,
                        threshold=_THRESHOLDS[t], window_start=60.0 * i, window_end=60.0 * i + 60, n=n,
                        message="m", significant=significant)
            acts = judged.would_act(f.model, f.signal, f.detector, f.n, f.value, f.threshold, f.significant)
            expected = every.evaluate(f, model_version=None, reference=None, ts=60.0 * i + 60)
            got = judged.evaluate(f, model_version=None, reference=None, ts=60.0 * i + 60) if acts else None
            assert got == expected
            assert judged.to_dict() == every.to_dict()


def _severity_reference(threshold, value):
    """Threshold.severity as first written: each limit crossed in the threshold's direction."""
    def crossed(limit):
        return limit is not None and (value >= limit if threshold.direction == "above" else value <= limit)
    return "critical" if crossed(threshold.critical) else "warning" if crossed(threshold.warning) else None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(_THRESHOLDS), st.floats(-1.0, 2.0) | st.sampled_from([0.1, 0.25, 0.8, 0.6, float("nan")]))
def test_severity_is_the_limit_crossed_in_its_direction(threshold, value):
    assert threshold.severity(value) == _severity_reference(threshold, value)


def test_a_window_judge_building_every_finding_gives_the_same_alerts(demo_stream, demo_references):
    """The demo stream, judged as it is and with would_act always True (every finding built): the same alerts.

    The demo's alerts cover quality, drift, estimated-performance and serving signals firing and
    resolving, so each builder's arguments to would_act (n, value, threshold, significance) are checked.
    """
    import orjson

    from tripwire import demo
    from tripwire.config import parse_config
    from tripwire.engine import Engine

    def alerts(build_every_finding):
        engine = Engine(parse_config(demo.demo_config()), references=demo_references)
        if build_every_finding:
            for monitor in engine.monitors.values():
                monitor.policy.would_act = lambda *args, **kwargs: True
        return [orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in engine.process_records(demo_stream[0]).alerts]

    judged = alerts(False)
    assert judged == alerts(True)
    kinds = {orjson.loads(a)["kind"] for a in judged}
    statuses = {orjson.loads(a)["status"] for a in judged}
    assert {"data_quality", "data_drift", "estimated_performance"} <= kinds and statuses == {"firing", "resolved"}
