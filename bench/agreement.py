"""Agreement of tripwire's statistics with NannyML, Evidently and scipy on the same windows.

NannyML's car-loan analysis period is cut into 10 windows of 5,000 rows. tripwire's values come
from its detectors (the same classes the engine folds windows into) fed each window's column,
cross-checked against the statistics the engine itself published for that window when the data
is replayed as events. NannyML gets ``chunk_size=5000``; Evidently gets each window as its
current dataset against the full reference. Where the methods differ by design (tripwire bins on
reference quantiles; the anchors use raw samples or their own binning) the table says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from bench import anchors
from bench import carloan as C

WINDOW = 5000

# (tripwire key, anchor, anchor key, features, transform of the anchor value, why they differ)
COMPARISONS: list[tuple[str, str, str, str, str, str]] = [
    ("psi", "Evidently", "psi", "categorical", "", "same eps-floored PSI on categories"),
    ("psi", "Evidently", "psi", "numeric", "",
     "tripwire: 10 reference-quantile bins; Evidently: 30 equal-width bins over reference+current"),
    ("js", "NannyML", "jensen_shannon", "categorical", "", "same categories, base 2"),
    ("js", "NannyML", "jensen_shannon", "numeric", "",
     "tripwire: 10 reference-quantile bins; NannyML: 'doane' equal-width bins on the reference"),
    ("js", "Evidently", "jensenshannon", "categorical", "/sqrt(ln 2)", "Evidently uses natural log (rescaled here)"),
    ("js", "Evidently", "jensenshannon", "numeric", "/sqrt(ln 2)",
     "natural log (rescaled) and Evidently's own equal-width bins"),
    ("ks_statistic", "scipy", "ks_2samp", "numeric", "",
     "tripwire evaluates the CDFs at its 9 bin edges only: a lower bound of the raw-sample D"),
    ("ks_statistic", "NannyML", "kolmogorov_smirnov", "numeric", "", "NannyML: raw (or finely binned) samples"),
    ("ks_pvalue", "Evidently", "ks", "numeric", "", "p-value of the binned vs the raw-sample D"),
    ("wasserstein", "Evidently", "wasserstein", "numeric", "",
     "both in reference standard deviations; tripwire moves bin masses between reference bin means"),
    ("wasserstein", "NannyML", "wasserstein", "numeric", "/ref std", "NannyML in feature units (rescaled here)"),
    ("chi2_statistic", "NannyML", "chi2", "categorical", "",
     "NannyML: two-sample contingency test; tripwire: goodness of fit to the reference fractions"),
    ("chi2_pvalue", "Evidently", "chisquare", "categorical", "", "both goodness of fit to the reference fractions"),
    ("chi2_pvalue", "scipy", "chisquare", "categorical", "", "scipy.stats.chisquare(counts, n * reference)"),
]
PERFORMANCE = [
    ("performance:accuracy", "realized", "accuracy", "same definition; windows of 5,000 outcomes"),
    ("performance:f1", "realized", "f1", "same definition"),
    ("performance:roc_auc", "realized", "roc_auc", "tripwire: exact AUC over the window"),
    ("estimated:accuracy", "estimated", "accuracy", "NannyML CBPE calibrates scores on the reference (isotonic); "
                                                    "tripwire by histogram binning (20 score quantiles)"),
    ("estimated:f1", "estimated", "f1", "as above"),
]


def tripwire_values(window: int = WINDOW) -> dict[str, Any]:
    """Per feature, per statistic, per window: tripwire's detectors on the window's values."""
    from tripwire.detectors.distribution import drift_detector_for

    reference, analysis = C.load()
    profile = C.reference_profile()
    out: dict[str, dict[str, list[float | None]]] = {}
    for name in C.FEATURES:
        detector = drift_detector_for(profile["features"][name])
        per: dict[str, list[float | None]] = {}
        values = analysis[name].tolist()
        for start in range(0, len(values), window):
            chunk = values[start:start + window]
            if name in C.NUMERIC:
                detector.update_many(np.asarray(chunk, dtype=float))
            else:
                detector.update_many(chunk)
            result = detector.result()
            detector.reset()
            for key in ("psi", "js", "wasserstein", "ks_statistic", "ks_pvalue", "chi2_statistic", "chi2_pvalue"):
                if result.get(key) is not None:
                    per.setdefault(key, []).append(float(result[key]))
        out[name] = per
    return out


def scipy_values(window: int = WINDOW) -> dict[str, dict[str, list[float]]]:
    reference, analysis = C.load()
    profile = C.reference_profile()
    out: dict[str, dict[str, list[float]]] = {}
    for name in C.NUMERIC:
        ref = reference[name].to_numpy(dtype=float)
        out[name] = {"ks_2samp": [float(sps.ks_2samp(ref, analysis[name].iloc[s:s + window].to_numpy(dtype=float)).statistic)
                                  for s in range(0, len(analysis), window)]}
    for name in C.CATEGORICAL:
        categories = profile["features"][name]["categories"]
        keys = list(categories)
        fractions = np.array([categories[k] for k in keys])
        pvalues = []
        for s in range(0, len(analysis), window):
            chunk = analysis[name].iloc[s:s + window].map(str)
            counts = np.array([(chunk == k).sum() for k in keys], dtype=float)
            pvalues.append(float(sps.chisquare(counts, counts.sum() * fractions / fractions.sum()).pvalue))
        out[name] = {"chisquare": pvalues}
    return out


def engine_crosscheck(run: C.TripwireRun, values: dict[str, Any]) -> float:
    """Largest difference between the engine's published window stats and the detectors' values."""
    worst = 0.0
    for w, window in enumerate(run.windows):
        for name in C.FEATURES:
            for key in ("psi", "js", "wasserstein"):
                published = window["stats"].get(f"feature:{name}.{key}")
                if published is not None and key in values[name]:
                    worst = max(worst, abs(published - values[name][key][w]))
    return worst


def _summary(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    diff = np.abs(a - b)
    i = int(np.nanargmax(diff))
    corr = float(np.corrcoef(a, b)[0, 1]) if a.size > 2 and np.std(a) > 0 and np.std(b) > 0 else math.nan
    rel = diff / np.maximum(np.abs(b), 1e-12)
    return {"n": int(a.size), "mean_abs_diff": float(np.nanmean(diff)), "max_abs_diff": float(diff[i]),
            "max_at": i, "max_rel_diff": float(np.nanmax(rel)), "pearson": corr,
            "tripwire_at_max": float(a[i]), "anchor_at_max": float(b[i])}


def run(nannyml_drift: dict[str, Any] | None = None, nannyml_perf: dict[str, Any] | None = None,
        evidently: dict[str, Any] | None = None) -> dict[str, Any]:
    nannyml_drift = nannyml_drift or anchors.nannyml_univariate(WINDOW, anchors.NANNYML_CONTINUOUS,
                                                                anchors.NANNYML_CATEGORICAL)
    nannyml_perf = nannyml_perf or anchors.nannyml_performance(WINDOW)
    evidently = evidently or anchors.evidently_values(WINDOW)
    ours = tripwire_values()
    theirs = {"NannyML": nannyml_drift["values"], "Evidently": evidently["values"], "scipy": scipy_values()}
    profile = C.reference_profile()
    rows = []
    for key, anchor, their_key, kind, transform, why in COMPARISONS:
        names = C.NUMERIC if kind == "numeric" else C.CATEGORICAL
        a, b, where = [], [], []
        for name in names:
            mine = ours[name].get(key)
            other = theirs[anchor].get(name, {}).get(their_key)
            if mine is None or other is None:
                continue
            if transform == "/sqrt(ln 2)":
                other = [v / math.sqrt(math.log(2)) for v in other]
            elif transform == "/ref std":
                other = [v / profile["features"][name]["std"] for v in other]
            a += mine
            b += other
            where += [(name, w) for w in range(len(mine))]
        if not a:
            continue
        s = _summary(a, b)
        feature, window = where[s["max_at"]]
        row = {"statistic": key, "features": kind, "anchor": f"{anchor} {their_key}{' ' + transform if transform else ''}",
               **s, "max_at": f"{feature} w{window}", "why": why}
        if key.endswith("pvalue"):
            agree = sum((x <= 0.01) == (y <= 0.01) for x, y in zip(a, b))
            row["decisions_agree_at_0.01"] = f"{agree}/{len(a)}"
        rows.append(row)

    run_ = C.run_tripwire(WINDOW, performance_window=WINDOW)
    crosscheck = engine_crosscheck(run_, ours)
    for key, family, metric, why in PERFORMANCE:
        source = run_.performance if family == "realized" else run_.windows
        mine = [w["stats"].get(key) for w in source]
        other = nannyml_perf[family][metric]
        if len(mine) != len(other) or any(v is None for v in mine):
            rows.append({"statistic": key, "anchor": f"NannyML {family} {metric}", "n": 0,
                         "why": f"window count differs: {len(mine)} vs {len(other)}"})
            continue
        s = _summary(mine, other)
        rows.append({"statistic": key, "features": "model", "anchor": f"NannyML {'CBPE' if family == 'estimated' else 'realized'} {metric}",
                     **s, "max_at": f"w{s['max_at']}", "why": why})
    # Both label-free estimators against the truth they estimate (realized on the same windows).
    for metric in ("accuracy", "f1"):
        realized = nannyml_perf["realized"][metric]
        for who, estimate in (("tripwire", [w["stats"].get(f"estimated:{metric}") for w in run_.windows]),
                              ("NannyML CBPE", nannyml_perf["estimated"][metric])):
            if len(estimate) != len(realized) or any(v is None for v in estimate):
                continue
            s = _summary(estimate, realized)
            rows.append({"statistic": f"estimated {metric} error", "features": "model",
                         "anchor": f"{who} estimate vs realized {metric}", **s, "max_at": f"w{s['max_at']}",
                         "tripwire_at_max": s["tripwire_at_max"], "why": "how far each label-free estimate is from "
                         "the realized value (tripwire column = the estimate)"})
    return {"rows": rows, "window_rows": WINDOW, "engine_vs_detectors_max_diff": crosscheck,
            "tripwire": ours, "anchors": theirs,
            "performance": {"tripwire": {k: [w["stats"].get(k) for w in (run_.performance if f == "realized" else run_.windows)]
                                         for k, f, _m, _w in PERFORMANCE},
                            "nannyml": nannyml_perf}}
