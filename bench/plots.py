"""PNG figures of a benchmark run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TRIPWIRE = "#c0392b"
OTHERS = "#7f8c8d"


def detection_delays(detection: dict[str, Any], path: Path) -> None:
    rows = [r for r in detection["rows"] if r["drifts"]]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 0.42 * len(methods) + 1.8), sharey=True)
    for ax, scenario in zip(np.atleast_1d(axes), scenarios):
        by = {r["method"]: r for r in rows if r["scenario"] == scenario}
        for y, method in enumerate(methods):
            r = by.get(method)
            if r is None:
                continue
            colour = TRIPWIRE if method.startswith("tripwire") else OTHERS
            if r["delays"]:
                ax.boxplot([r["delays"]], positions=[y], vert=False, widths=0.6, patch_artist=True,
                           boxprops={"facecolor": colour, "alpha": 0.5}, medianprops={"color": "black"},
                           flierprops={"markersize": 2})
            label = f"missed {r['drifts'] - r['detected']}/{r['drifts']}"
            ax.text(0.01, y, label, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=7,
                    color="black" if r["detected"] == r["drifts"] else TRIPWIRE,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("delay, labelled predictions after the drift point (symlog)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(left=-1500)
    first = np.atleast_1d(axes)[0]
    first.set_yticks(range(len(methods)))
    first.set_yticklabels(methods, fontsize=7)
    fig.suptitle("Detection delay per scenario (box: seeds; text: missed drifts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def statistic_over_time(detection: dict[str, Any], carloan: dict[str, Any], path: Path,
                        psi_warning: float, psi_critical: float) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5))
    # Car loan: PSI per tripwire data window and feature, thresholds, alerts.
    window = carloan["window_events"]
    shifted = {"car_value", "salary_range", "loan_length", "repaid_loan_on_prev_car"}
    for feature, series in carloan["psi_series"].items():
        x = np.arange(len(series))
        top.plot(x, series, marker="o", markersize=2.5, linewidth=1,
                 linestyle="-" if feature in shifted else "--", label=feature + (" (shifts)" if feature in shifted else ""))
    top.axhline(psi_warning, color="orange", linewidth=1, label=f"warning {psi_warning}")
    top.axhline(psi_critical, color="red", linewidth=1, label=f"critical {psi_critical}")
    top.axvspan(25_000 // window - 0.5, len(next(iter(carloan["psi_series"].values()))) - 0.5, color="grey", alpha=0.12,
                label="after the shift (truth)")
    for index, _signal, status, _severity in carloan["alerts"]:
        if status == "firing":
            w = ((index + 1) // 2 - 1) // window
            top.plot([w], [psi_critical * 1.5], marker="v", color="black", markersize=6)
    top.set_yscale("symlog", linthresh=0.05)
    top.set_xlabel(f"tripwire data window ({window} events)")
    top.set_ylabel("PSI vs reference")
    top.set_title("NannyML car-loan data through tripwire: PSI per window (triangles: data_drift alerts fired)", fontsize=10)
    top.legend(fontsize=7, ncol=3)
    # SEA: rolling error rate with alarms.
    sea = detection["example"].get("sea")
    if sea:
        errors = np.asarray(sea["errors"], dtype=float)
        k = 500
        rolling = np.convolve(errors, np.ones(k) / k, mode="valid")
        bottom.plot(np.arange(k - 1, len(errors)), rolling, color="black", linewidth=0.8, label=f"error rate (rolling {k})")
        bottom.axvline(sea["delay_from"], color="grey", linestyle=":", label="drift position")
        shown = {"tripwire alert: concept_drift (ADWIN on errors)": TRIPWIRE,
                 "tripwire alert: performance (accuracy/F1 window)": "#e67e22",
                 "river PageHinkley": "#2980b9", "river DDM": "#27ae60", "river HDDM_W": "#8e44ad"}
        for level, (method, colour) in enumerate(shown.items()):
            marks = sea["alarms"].get(method, [])
            y = rolling.max() * (1.05 + 0.06 * level)
            bottom.scatter(marks, [y] * len(marks), marker="|", s=120, color=colour, label=method)
        bottom.set_xlabel("labelled prediction")
        bottom.set_ylabel("error rate")
        bottom.set_title(f"{sea['scenario']}, seed {sea['seed']}: frozen concept-0 model's errors, and alarms", fontsize=10)
        bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput(bars: list[tuple[str, float, bool]], path: Path, unit: str, title: str) -> None:
    labels = [b[0] for b in bars]
    values = [b[1] for b in bars]
    colours = [TRIPWIRE if b[2] else OTHERS for b in bars]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(bars) + 1.2))
    ax.barh(range(len(bars)), values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 3, max(values) * 4)
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
