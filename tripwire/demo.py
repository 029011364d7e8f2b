"""The built-in demo stream: three models in production, with incidents injected at known points.

- ``fuel-efficiency``: a regression model of a car's miles per gallon from the classic auto-MPG
  attributes (cylinders, displacement, horsepower, weight, acceleration, model year, origin);
- ``credit``: a loan-approval classifier with a calibrated score and a sensitive attribute;
- ``triage``: a multi-class classifier routing support tickets to the account, billing or
  technical team, with the probability of each class.

The triage stream has a random generator of its own, so the other two models' events (and
alerts) are the same as without it.

The stream is a list of JSON records in event-time order, exactly what a serving system would put
on the input topics, malformed records included, so the demo exercises the same decode path as
``tripwire replay`` and the worker. :func:`write_demo_config` writes the references and a
``monitor.toml`` that run the same three models in ``tripwire worker``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from tripwire.events import format_ts
from tripwire.reference import build_reference, save_reference

START = 1_795_824_000.0  # 2026-11-28T00:00:00Z
ORIGINS = ("USA", "Europe", "Japan")
EMPLOYMENT = ("salaried", "self-employed", "unemployed")
TEAMS = ("account", "billing", "technical")
CHANNELS = ("email", "chat", "phone")


@dataclass(frozen=True)
class Incident:
    name: str
    model: str
    kinds: tuple[str, ...]  # alert kinds that count as catching it
    at_minute: float
    signal_prefix: str = ""


INCIDENTS = (
    Incident("latency spike (fuel-efficiency, 3 min)", "fuel-efficiency", ("infrastructure",), 10),
    Incident("burst of 300 malformed records", "*", ("data_quality",), 15, "stream:deadletter"),
    Incident("covariate drift: weight +700 lb, horsepower +30", "fuel-efficiency", ("data_drift",), 20, "feature:"),
    Incident("fairness gap: group B scored 0.3 lower (credit)", "credit", ("fairness",), 30),
    Incident("concept drift: repayment odds fall, features unchanged (credit)", "credit",
             ("concept_drift", "performance"), 40),
    Incident("concept drift: half the billing tickets go to account (triage)", "triage",
             ("concept_drift", "performance"), 30),
)
DURATION_MINUTES = 50
RATE_PER_MODEL = 8.0  # requests per second of event time
TRIAGE_RATE = 4.0  # the triage model's: half, so the demo stream grows by a quarter, not a half


def cars(rng: np.random.Generator, n: int, drifted: bool = False) -> dict[str, np.ndarray]:
    origin = rng.choice(len(ORIGINS), size=n, p=[0.62, 0.18, 0.20])
    usa = origin == 0
    cylinders = np.where(usa, rng.choice([4, 6, 8], size=n, p=[0.35, 0.30, 0.35]),
                         rng.choice([4, 6], size=n, p=[0.85, 0.15]))
    displacement = cylinders * 40.0 + rng.normal(0, 15, n)
    horsepower = 0.45 * displacement + 25 + rng.normal(0, 10, n) + (30 if drifted else 0)
    weight = 1500 + 7.5 * displacement + rng.normal(0, 200, n) + (700 if drifted else 0)
    acceleration = 21 - horsepower / 25 + rng.normal(0, 1.2, n)
    model_year = rng.integers(70, 83, n)
    return {
        "cylinders": cylinders, "displacement": displacement.round(1), "horsepower": horsepower.round(1),
        "weight": weight.round(0), "acceleration": acceleration.round(1), "model_year": model_year,
        "origin": np.array(ORIGINS)[origin],
    }


def mpg_model(car: dict[str, np.ndarray]) -> np.ndarray:
    """The deployed model: the true relation without noise."""
    return 46 - 0.0055 * car["weight"] - 0.045 * car["horsepower"] + 0.55 * (car["model_year"] - 76)


def applicants(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "income": np.round(rng.lognormal(10.8, 0.5, n), 0),
        "debt_ratio": np.round(rng.beta(2, 5, n), 3),
        "age": np.round(np.clip(rng.normal(41, 12, n), 18, 90), 0),
        "history_months": rng.integers(0, 360, n),
        "employment": np.array(EMPLOYMENT)[rng.choice(3, size=n, p=[0.7, 0.22, 0.08])],
        "group": np.where(rng.random(n) < 0.7, "A", "B"),
    }


def repay_probability(person: dict[str, np.ndarray]) -> np.ndarray:
    z = (-1.0 + 0.9 * (np.log(person["income"]) - 10.8) / 0.5 - 3.0 * (person["debt_ratio"] - 0.28)
         + 0.01 * (person["age"] - 41) + 0.003 * person["history_months"]
         - 1.2 * (person["employment"] == "unemployed") + 0.8)
    return 1 / (1 + np.exp(-z))


def tickets(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "message_words": np.round(rng.lognormal(4.0, 0.6, n), 0),
        "attachments": rng.poisson(0.6, n),
        "tenure_months": rng.integers(0, 120, n),
        "channel": np.array(CHANNELS)[rng.choice(3, size=n, p=[0.5, 0.35, 0.15])],
    }


def team_probabilities(ticket: dict[str, np.ndarray]) -> np.ndarray:
    """The deployed router's (calibrated) probability of each team, one row per ticket."""
    words = (np.log(ticket["message_words"] + 1) - 4.0) / 0.6
    logits = np.column_stack([
        0.9 - 0.02 * ticket["tenure_months"] + 0.8 * (ticket["channel"] == "phone"),
        0.4 + 0.8 * words - 0.6 * ticket["attachments"] + 0.012 * ticket["tenure_months"],
        -0.6 + 1.1 * ticket["attachments"] + 0.7 * (ticket["channel"] == "chat") - 0.3 * words,
    ]) * 1.6
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def route(rng: np.random.Generator, p: np.ndarray, moved: np.ndarray | None = None) -> np.ndarray:
    """The team that really handles each ticket; ``moved``: billing tickets that now go to account."""
    team = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    if moved is not None:
        team = np.where((team == 1) & moved, 0, team)
    return np.array(TEAMS)[np.minimum(team, len(TEAMS) - 1)]


def training_references(seed: int) -> dict[str, dict[str, Any]]:
    """Reference profiles from each model's (simulated) validation data."""
    rng = np.random.default_rng(seed + 1_000)
    car = cars(rng, 5000)
    fuel = pd.DataFrame(car)
    fuel["prediction"] = mpg_model(car)
    fuel["mpg"] = fuel["prediction"] + rng.normal(0, 2.5, len(fuel))
    person = applicants(rng, 5000)
    credit = pd.DataFrame(person)
    credit["score"] = repay_probability(person)
    credit["approved"] = (credit["score"] >= 0.5).astype(int)
    credit["repaid"] = (rng.random(len(credit)) < credit["score"]).astype(int)
    ticket_rng = np.random.default_rng(seed + 2_000)
    ticket = tickets(ticket_rng, 5000)
    triage = pd.DataFrame(ticket)
    p = team_probabilities(ticket)
    for j, team in enumerate(TEAMS):
        triage[f"p_{team}"] = p[:, j].round(4)
    triage["routed"] = np.array(TEAMS)[p.argmax(axis=1)]
    triage["team"] = route(ticket_rng, p)
    return {
        "fuel-efficiency": build_reference(fuel, model="fuel-efficiency", task="regression", target="mpg",
                                           prediction="prediction", categorical=["origin"]),
        "credit": build_reference(credit, model="credit", task="classification", target="repaid",
                                  prediction="approved", score="score", attributes=["group"], positive_class=1),
        "triage": build_reference(triage, model="triage", task="classification", target="team", prediction="routed",
                                  class_scores_prefix="p_", categorical=["channel"]),
    }


def demo_config() -> dict[str, Any]:
    return {
        "defaults": {"performance_window": 1000},
        "models": [
            {"name": "fuel-efficiency", "reference": "demo:fuel-efficiency"},
            {"name": "credit", "reference": "demo:credit"},
            {"name": "triage", "reference": "demo:triage"},
        ],
    }


def malformed_records(rng: np.random.Generator, ts: float, count: int) -> list[bytes]:
    stamp = format_ts(ts)
    shapes = [
        b'{"type":"prediction","schema":1,"request_id":"x","model":"credit"',  # truncated
        b"not json at all",
        orjson.dumps({"type": "prediction", "schema": 2, "request_id": "x", "model": "credit", "ts": stamp,
                      "prediction": 1}),
        orjson.dumps({"type": "prediction", "schema": 1, "model": "credit", "ts": stamp, "prediction": 1}),
        orjson.dumps({"type": "label", "schema": 1, "request_id": "x", "model": "credit", "ts": "yesterday",
                      "label": 1}),
        b'{"type":"prediction","schema":1,"request_id":"x","model":"credit","ts":"' + stamp.encode()
        + b'","prediction":1e999}',
    ]
    return [shapes[i] for i in rng.integers(0, len(shapes), count)]


def generate(seed: int = 7) -> tuple[list[bytes], dict[str, int]]:
    """The demo stream as records, and the number (from 1) of the first record of each incident."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_MINUTES * 60 * RATE_PER_MODEL)
    minute = {i.name: START + i.at_minute * 60 for i in INCIDENTS}
    latency, malformed, covariate, fairness, concept, _triage = (i.name for i in INCIDENTS)

    gaps = rng.exponential(1 / RATE_PER_MODEL, (2, n))
    times = START + np.cumsum(gaps, axis=1)
    fuel_ts, credit_ts = times
    car_normal, car_drift = cars(rng, n), cars(rng, n, drifted=True)
    drifted = fuel_ts >= minute[covariate]
    car = {k: np.where(drifted, car_drift[k], car_normal[k]) for k in car_normal}
    mpg_pred = mpg_model(car)
    mpg_true = mpg_pred + rng.normal(0, 2.5, n)
    fuel_latency = rng.lognormal(math.log(12), 0.35, n)
    spike = (fuel_ts >= minute[latency]) & (fuel_ts < minute[latency] + 180)
    fuel_latency[spike] *= rng.uniform(20, 60, spike.sum())

    person = applicants(rng, n)
    p_true = repay_probability(person)
    score = p_true.copy()
    biased = (credit_ts >= minute[fairness]) & (person["group"] == "B")
    score[biased] = np.clip(score[biased] - 0.3, 0, 1)
    p_label = np.where(credit_ts >= minute[concept], p_true * 0.45, p_true)
    repaid = (rng.random(n) < p_label).astype(int)
    credit_latency = rng.lognormal(math.log(25), 0.3, n)

    records: list[tuple[float, int, bytes]] = []
    pending: list[tuple[float, int, bytes]] = []  # labels, by the event time they land
    sequence = 0

    def emit(ts: float, record: bytes) -> None:
        nonlocal sequence
        records.append((ts, sequence, record))
        sequence += 1

    def label_later(ts: float, request_id: str, model: str, label: Any) -> None:
        nonlocal sequence
        heapq.heappush(pending, (ts, sequence, orjson.dumps({
            "type": "label", "schema": 1, "request_id": request_id, "model": model, "ts": format_ts(ts),
            "label": label})))
        sequence += 1

    fuel_labelled = rng.random(n) < 0.6
    fuel_lag = rng.uniform(30, 300, n)
    credit_labelled = rng.random(n) < 0.8
    credit_lag = rng.uniform(60, 600, n)
    burst_at = minute[malformed]
    burst = malformed_records(rng, burst_at, 300)
    order = np.argsort(np.concatenate([fuel_ts, credit_ts]), kind="stable")
    for position in order:
        model_index, i = divmod(int(position), n)
        ts = float(times[model_index, i])
        while pending and pending[0][0] <= ts:
            records.append(heapq.heappop(pending))
        if burst and ts >= burst_at:
            for bad in burst:
                emit(ts, bad)
            burst = []
        if model_index == 0:
            request_id = f"f-{i:06d}"
            features = {k: _plain(v[i]) for k, v in car.items()}
            emit(ts, orjson.dumps({
                "type": "prediction", "schema": 1, "request_id": request_id, "model": "fuel-efficiency",
                "model_version": "7", "ts": format_ts(ts), "features": features,
                "prediction": round(float(mpg_pred[i]), 2), "score": None,
                "latency_ms": round(float(fuel_latency[i]), 2), "attributes": {"region": "EU" if i % 3 else "US"}}))
            if fuel_labelled[i]:
                label_later(ts + fuel_lag[i], request_id, "fuel-efficiency", round(float(mpg_true[i]), 2))
        else:
            request_id = f"c-{i:06d}"
            features = {k: _plain(person[k][i]) for k in ("income", "debt_ratio", "age", "history_months", "employment")}
            emit(ts, orjson.dumps({
                "type": "prediction", "schema": 1, "request_id": request_id, "model": "credit",
                "model_version": "3", "ts": format_ts(ts), "features": features,
                "prediction": int(score[i] >= 0.5), "score": round(float(score[i]), 4),
                "latency_ms": round(float(credit_latency[i]), 2), "attributes": {"group": str(person["group"][i])}}))
            if credit_labelled[i]:
                label_later(ts + credit_lag[i], request_id, "credit", int(repaid[i]))
    records.extend(sorted(pending))
    records.extend(triage_records(seed, int(DURATION_MINUTES * 60 * TRIAGE_RATE), minute[INCIDENTS[5].name],
                                  sequence))
    records.sort(key=lambda r: (r[0], r[1]))
    stream = [record for _ts, _seq, record in records]
    first_index = {}
    for incident in INCIDENTS:
        at = minute[incident.name]
        first_index[incident.name] = next(k for k, (ts, _s, _r) in enumerate(records, 1) if ts >= at)
    return stream, first_index


def triage_records(seed: int, n: int, moved_from: float, sequence: int) -> list[tuple[float, int, bytes]]:
    """The triage model's predictions and labels as (ts, sequence, record), sequences from ``sequence``."""
    rng = np.random.default_rng(seed + 3_000)
    times = START + np.cumsum(rng.exponential(1 / TRIAGE_RATE, n))
    ticket = tickets(rng, n)
    p = team_probabilities(ticket)
    team = route(rng, p, moved=(times >= moved_from) & (rng.random(n) < 0.5))
    labelled = rng.random(n) < 0.9
    lag = rng.uniform(60, 600, n)
    latency = rng.lognormal(math.log(8), 0.3, n)
    out = []
    for i in range(n):
        ts = float(times[i])
        request_id = f"t-{i:06d}"
        out.append((ts, sequence, orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": request_id, "model": "triage", "model_version": "2",
            "ts": format_ts(ts), "features": {k: _plain(v[i]) for k, v in ticket.items()},
            "prediction": TEAMS[int(p[i].argmax())],
            "scores": {t: round(float(p[i, j]), 4) for j, t in enumerate(TEAMS)},
            "latency_ms": round(float(latency[i]), 2)})))
        sequence += 1
        if labelled[i]:
            out.append((ts + lag[i], sequence, orjson.dumps({
                "type": "label", "schema": 1, "request_id": request_id, "model": "triage",
                "ts": format_ts(ts + lag[i]), "label": str(team[i])})))
            sequence += 1
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Caught:
    incident: Incident
    injected_index: int
    alert: dict[str, Any] | None
    alert_index: int | None

    @property
    def events_late(self) -> int | None:
        return None if self.alert_index is None else self.alert_index - self.injected_index


def is_catch(incident: Incident, alert: dict[str, Any]) -> bool:
    return (alert["status"] == "firing" and alert["model"] == incident.model and alert["kind"] in incident.kinds
            and alert["signal"].startswith(incident.signal_prefix))


def score_incidents(alerts: list[tuple[int, dict[str, Any]]], first_index: dict[str, int]) -> tuple[list[Caught], int]:
    """For each incident the first matching alert at or after its injection; and alerts before any incident."""
    caught = []
    for incident in INCIDENTS:
        start = first_index[incident.name]
        hit = next(((i, a) for i, a in alerts if i >= start and is_catch(incident, a)), None)
        caught.append(Caught(incident, start, hit[1] if hit else None, hit[0] if hit else None))
    first = min(first_index.values())
    early = sum(1 for i, a in alerts if i < first and a["status"] == "firing")
    return caught, early


DEMO_CONFIG = """\
# Written by `tripwire demo --write-config`: the demo's three models, for `tripwire worker`.
[defaults]
performance_window = 1000

[[models]]
name = "fuel-efficiency"
reference = "fuel-efficiency.json"

[[models]]
name = "credit"
reference = "credit.json"

[[models]]
name = "triage"
reference = "triage.json"

[kafka]
bootstrap_servers = "127.0.0.1:9092"   # or TRIPWIRE_KAFKA_BOOTSTRAP

[worker]
app_id = "tripwire-demo"
"""


def write_demo_config(directory: Path, seed: int = 7, broker: str | None = None) -> Path:
    """Write the demo's references and a ``monitor.toml`` naming them into ``directory``; return the config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, reference in training_references(seed).items():
        save_reference(reference, directory / f"{name}.json")
    path = directory / "monitor.toml"
    text = DEMO_CONFIG if not broker else DEMO_CONFIG.replace('"127.0.0.1:9092"', f'"{broker}"')
    path.write_text(text, encoding="utf-8")
    return path
