"""The status page's state per signal, fed the alert policy's real alerts."""

from __future__ import annotations

from tripwire.alerts import AlertPolicy, Finding
from tripwire.config import Threshold
from tripwire.streams.status import StatusBoard

T0 = 1_795_824_000.0
LIMITS = {"psi": Threshold(0.1, 0.25), "out_of_range_rate": Threshold(0.05, 0.2)}


def alert(policy: AlertPolicy, detector: str, value: float, window: int) -> dict:
    start = T0 + 60 * window
    finding = Finding(model="fuel-efficiency", kind="data_drift", signal="feature:weight", detector=detector,
                      value=value, threshold=LIMITS[detector], window_start=start, window_end=start + 60, n=1000,
                      message=f"{detector} of weight is {value}")
    raised = policy.evaluate(finding, model_version="1", reference="r", ts=start + 60)
    assert raised is not None
    return raised


def weight(board: StatusBoard) -> dict:
    return board.models["fuel-efficiency"]["signals"]["feature:weight"]


def test_a_signal_shows_its_escalation_whatever_its_other_detectors_say():
    """The demo's weight: psi warns, out-of-range warns, psi escalates; the signal is critical until psi resolves."""
    policy, board = AlertPolicy(min_samples=100, resolve_windows=1), StatusBoard("w1")
    board.observe_alert(alert(policy, "psi", 0.22, 0))
    assert weight(board) == {"status": "warning", "detector": "psi", "value": 0.22}
    board.observe_alert(alert(policy, "psi", 2.8, 1))  # the escalation
    board.observe_alert(alert(policy, "out_of_range_rate", 0.098, 1))  # another detector's warning, after it
    assert weight(board) == {"status": "critical", "detector": "psi", "value": 2.8}
    board.observe_alert(alert(policy, "out_of_range_rate", 0.0, 2))  # that warning resolves
    assert weight(board) == {"status": "critical", "detector": "psi", "value": 2.8}
    board.observe_alert(alert(policy, "psi", 0.01, 3))  # the incident resolves: nothing fires on weight
    assert weight(board)["status"] == "ok"
    assert len(board.snapshot([])["recent_alerts"]) == 5
