"""Reference profiles: what the training / validation data looked like, as one versioned JSON document.

Numeric features get quantile bin edges (open-ended outer bins), so every monitored value costs
one binary search; categorical features keep their most frequent categories plus an "other"
bucket. The format is described in ``docs/reference-format.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import orjson

from tripwire.classes import ClassSet, class_key, distinct_classes
from tripwire.detectors.estimated import score_calibration
from tripwire.detectors.multiclass import multiclass_baseline
from tripwire.detectors.performance import baseline_metrics

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "tripwire.reference"
VERSION = 1
TASKS = ("regression", "classification")


class ReferenceError(ValueError):
    """The data or the reference document cannot be used; the message says why."""


def numeric_profile(values: Iterable[Any], bins: int = 10) -> dict[str, Any]:
    """Quantile bins of the finite values; ties can merge bins, so a profile may have fewer."""
    import pandas as pd  # here, not at the top: loading a reference (every command) needs no pandas

    raw = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    count = len(raw)
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        raise ReferenceError("no finite numeric values")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    # An edge equal to the minimum would leave the first bin empty by construction.
    edges = edges[edges > finite.min()]
    index = np.searchsorted(edges, finite, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    sums = np.bincount(index, weights=finite, minlength=len(edges) + 1)
    centres = _bin_centres(edges, float(finite.min()), float(finite.max()))
    bin_means = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return {
        "kind": "numeric",
        "count": count,
        "missing_rate": float(1 - finite.size / count),
        "edges": edges.tolist(),
        "fractions": (counts / finite.size).tolist(),
        "bin_means": bin_means.tolist(),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def _bin_centres(edges: np.ndarray, low: float, high: float) -> np.ndarray:
    bounds = np.concatenate([[low], edges, [high]])
    return (bounds[:-1] + bounds[1:]) / 2


def categorical_profile(values: Iterable[Any], max_categories: int = 50) -> dict[str, Any]:
    """Frequencies of the most common categories; the rest share the "other" bucket."""
    import pandas as pd

    series = pd.Series(list(values), dtype=object)
    count = len(series)
    present = series.dropna().map(str)
    if present.empty:
        raise ReferenceError("no non-missing values")
    frequencies = present.value_counts(sort=True)
    kept = frequencies.iloc[:max_categories]
    total = len(present)
    return {
        "kind": "categorical",
        "count": count,
        "missing_rate": float(1 - total / count),
        "categories": {str(k): float(v / total) for k, v in kept.items()},
        "other": float(frequencies.iloc[max_categories:].sum() / total),
    }


def build_reference(
    data: pd.DataFrame,
    *,
    model: str,
    task: str,
    target: str,
    prediction: str,
    score: str | None = None,
    class_scores: Sequence[str] = (),
    class_scores_prefix: str | None = None,
    categorical: Sequence[str] = (),
    attributes: Sequence[str] = (),
    features: Sequence[str] | None = None,
    positive_class: Any = None,
    bins: int = 10,
) -> dict[str, Any]:
    """Profile a DataFrame of training / validation rows with the model's predictions.

    Every column that is not the target, prediction, a score or an attribute is a feature unless
    ``features`` names them. Object / string / boolean columns are categorical automatically.

    A classifier with more than two classes is multi-class: ``class_scores`` (columns, each
    ``"column"`` or ``"class=column"``) and / or ``class_scores_prefix`` (every column named
    ``<prefix><class>``) give the probability of each class; see :func:`score_columns`.
    """
    import pandas as pd

    if task not in TASKS:
        raise ReferenceError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "regression" and (class_scores or class_scores_prefix):
        raise ReferenceError("per-class scores (--scores / --scores-prefix) are for classification only")
    for role, column in (("target", target), ("prediction", prediction), ("score", score),
                         *(("categorical", c) for c in categorical), *(("attribute", a) for a in attributes)):
        if column is not None and column not in data.columns:
            raise ReferenceError(f"{role} column {column!r} is not in the data (columns: {', '.join(map(str, data.columns))})")
    if len(data) == 0:
        raise ReferenceError("the data has no rows")
    if type(bins) is not int or bins < 2:
        raise ReferenceError(f"bins (--bins) must be an integer >= 2, got {bins!r}")

    labels = data[target].tolist()
    predictions = data[prediction].tolist()
    if task == "regression":
        labels, predictions = _numbers(data[target], target), _numbers(data[prediction], prediction)
    classes: list[Any] = []  # a classifier's, in the order of the reference
    class_set: ClassSet | None = None
    columns_by_class: dict[int, str] = {}
    if task == "classification":
        classes = distinct_classes([*labels, *predictions])
        if len(classes) < 2:
            raise ReferenceError(f"a classifier needs at least two classes; {target!r} and {prediction!r} hold {classes}")
        class_set = ClassSet(classes)
        labels = _canonical_column(class_set, labels, target)
        predictions = _canonical_column(class_set, predictions, prediction)
        columns_by_class = score_columns(class_set, [str(c) for c in data.columns], class_scores, class_scores_prefix)
    multiclass = len(classes) > 2
    if multiclass and score:
        raise ReferenceError(f"{len(classes)} classes: give each class's probability (--scores / --scores-prefix), "
                             "not one --score column")
    if multiclass and columns_by_class and len(columns_by_class) != len(classes):
        missing = [c for i, c in enumerate(classes) if i not in columns_by_class]
        raise ReferenceError(f"no probability column for the classes {missing} (classes {classes})")

    reserved = {target, prediction, score, *columns_by_class.values(), *attributes}
    names = list(features) if features is not None else [c for c in data.columns if c not in reserved]
    profiles: dict[str, Any] = {}
    for name in names:
        column = data[name]
        is_categorical = name in categorical or not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        try:
            profiles[name] = categorical_profile(column) if is_categorical else numeric_profile(column, bins)
        except ReferenceError as error:
            raise ReferenceError(f"feature {name!r}: {error}") from None

    score_column_list = [columns_by_class[i] for i in range(len(classes))] if multiclass and columns_by_class else None
    class_score_profiles = class_calibrations = None
    if class_set is not None:
        positive_class = _positive_class(class_set, positive_class, required=not multiclass)
        position = class_set.index(positive_class)
        if not multiclass and score is None and position is not None:
            # A binary model that gives both class probabilities: its score is the positive one's.
            score = columns_by_class.get(position)
        prediction_profile = categorical_profile(predictions)
    else:
        prediction_profile = numeric_profile(predictions, bins)
    scores = data[score].astype(float).tolist() if score else None
    if multiclass and score_column_list:
        probabilities = data[score_column_list].apply(pd.to_numeric, errors="coerce")
        bad = ~(probabilities.ge(0) & probabilities.le(1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ReferenceError(f"score columns, row {row}: every class's probability must be a number in [0, 1], got "
                                 f"{data[score_column_list].iloc[row].to_dict()}")
    if multiclass:
        rows = (data[score_column_list].astype(float).to_numpy().tolist() if score_column_list else None)
        baseline = multiclass_baseline(classes, predictions, labels, rows)
        if score_column_list:
            class_score_profiles, class_calibrations = [], []
            for position, column in enumerate(score_column_list):
                values = data[column].astype(float).tolist()
                try:
                    class_score_profiles.append(numeric_profile(values, bins))
                except ReferenceError as error:
                    raise ReferenceError(f"score column {column!r}: {error}") from None
                class_calibrations.append(score_calibration(values, labels, classes[position]))
    else:
        baseline = baseline_metrics(task, predictions, labels, scores=scores, positive_class=positive_class)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "task": task,
        "target": target,
        "prediction": prediction,
        "score": score,
        "classes": [_plain(c) for c in classes] if class_set is not None else None,
        "positive_class": _plain(positive_class),
        "n": len(data),
        "features": profiles,
        "prediction_profile": prediction_profile,
        "score_profile": numeric_profile(scores, bins) if scores is not None else None,
        "score_calibration": (score_calibration(scores, labels, positive_class)
                              if scores is not None and task == "classification" else None),
        "score_columns": score_column_list,
        "class_score_profiles": class_score_profiles,
        "class_score_calibrations": class_calibrations,
        "baseline": {k: v for k, v in baseline.items() if k != "n"},
        "attributes": list(attributes),
    }


def is_multiclass(reference: dict[str, Any]) -> bool:
    """A classifier with more than two classes."""
    return reference["task"] == "classification" and len(reference.get("classes") or ()) > 2


def score_columns(classes: ClassSet, columns: Sequence[str], given: Sequence[str] = (),
                  prefix: str | None = None) -> dict[int, str]:
    """Which column holds which class's probability: class position -> column.

    ``given`` entries are ``"class=column"``, or a bare column whose name ends with a class
    (the longest such class: ``p_10`` is class 10, not 0). With ``prefix``, every column
    ``<prefix><class>`` is one.

    >>> score_columns(ClassSet(["a", "b", "c"]), ["p_a", "p_b", "p_c", "x"], prefix="p_")
    {0: 'p_a', 1: 'p_b', 2: 'p_c'}
    >>> score_columns(ClassSet([0, 1, 10]), ["prob_0", "prob_1", "prob_10"], ["prob_0", "prob_1", "prob_10"])
    {0: 'prob_0', 1: 'prob_1', 2: 'prob_10'}
    """
    found: dict[int, str] = {}

    def assign(position: int | None, column: str, how: str) -> None:
        if column not in columns:
            raise ReferenceError(f"score column {column!r} is not in the data (columns: {', '.join(columns)})")
        if position is None:
            raise ReferenceError(f"score column {column!r}: {how} is none of the classes {classes.describe()}")
        if position in found and found[position] != column:
            raise ReferenceError(f"class {classes.classes[position]!r} has two score columns: "
                                 f"{found[position]!r} and {column!r}")
        found[position] = column

    for entry in given:
        if "=" in entry:
            name, column = entry.split("=", 1)
            assign(classes.index(name), column, f"class {name!r}")
            continue
        endings = [(len(class_key(c)), i) for i, c in enumerate(classes.classes) if entry.endswith(class_key(c))]
        assign(max(endings)[1] if endings else None, entry, "its name ending")
    if prefix:
        prefixed = [c for c in columns if c.startswith(prefix)]
        if not prefixed:
            raise ReferenceError(f"no column starts with the scores prefix {prefix!r}")
        for column in prefixed:
            assign(classes.index(column.removeprefix(prefix)), column, f"{column.removeprefix(prefix)!r}")
    return found


def _numbers(column: pd.Series, name: str) -> list[float]:
    """A regression target or prediction: a finite number on every row (the baseline needs each one)."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.argmax(bad))
        value = column.iloc[row]
        problem = "is missing" if pd.isna(value) else f"is {value!r}, not a finite number"
        raise ReferenceError(f"column {name!r} row {row}: {problem} ({int(bad.sum())} such rows; a regression "
                             "target and prediction need a number on every row)")
    return numbers.tolist()


def _canonical_column(classes: ClassSet, values: list[Any], column: str) -> list[Any]:
    canonical = []
    for row, value in enumerate(values):
        mapped = classes.canonical(value)
        if mapped is None:
            raise ReferenceError(f"column {column!r} row {row}: {value!r} is no class (missing values are not allowed)")
        canonical.append(mapped)
    return canonical


def _positive_class(classes: ClassSet, given: Any, *, required: bool) -> Any:
    if given is not None:
        match = classes.canonical(given)
        if match is None:
            raise ReferenceError(f"positive class {given!r} is not among the classes {classes.classes}")
        return match
    if len(classes) == 2:
        for candidate in (True, 1, "yes"):
            match = classes.canonical(candidate)
            if match is not None:
                return match
    if not required:
        return None  # multi-class: only fairness needs one, and it says so
    raise ReferenceError(f"cannot tell the positive class among {classes.classes}; pass positive_class (--positive-class)")


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so the document is plain JSON."""
    return value.item() if isinstance(value, np.generic) else value


def read_table(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"{path}: no such file")
    if path.is_dir():
        raise ReferenceError(f"{path}: is a directory; give a CSV or Parquet file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            return pd.read_parquet(path)
        if ".csv" in suffixes or ".tsv" in suffixes:
            return pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",")
    except (OSError, ValueError, EOFError) as error:  # pandas' parser errors, bad UTF-8, damaged gzip / Parquet
        raise ReferenceError(f"{path}: cannot read the data: {type(error).__name__}: {error}") from None
    raise ReferenceError(f"{path}: unknown data format; use .csv, .csv.gz, .tsv or .parquet")


def dumps_reference(reference: dict[str, Any]) -> bytes:
    return orjson.dumps(reference, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def save_reference(reference: dict[str, Any], path: str | Path) -> None:
    Path(path).write_bytes(dumps_reference(reference))


def validate_reference(document: Any, source: str) -> dict[str, Any]:
    """Check a reference document before any detector is built from it; the error names ``source`` and the key.

    Every runner (replay, worker, demo, MLflow resolution) loads references through here, so a
    hand-edited or damaged document stops the start-up instead of crashing at the first window.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReferenceError(f"{source}: not a tripwire reference (expected \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise ReferenceError(f"{source}: reference version {document.get('version')!r} is not supported (this is version {VERSION})")
    for key in ("model", "task", "features", "prediction_profile", "baseline"):
        if key not in document:
            raise ReferenceError(f"{source}: missing key {key!r}")

    def fail(key: str, problem: str) -> ReferenceError:
        return ReferenceError(f"{source}: {key} {problem}")

    task = document["task"]
    if task not in TASKS:
        raise fail("task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    rows = document.get("n")
    if rows is not None and (type(rows) is not int or rows <= 0):
        raise fail("n", f"(rows profiled) must be a positive integer, got {rows!r}")
    classes = document.get("classes")
    if task == "classification":
        if not isinstance(classes, list) or len(classes) < 2:
            raise fail("classes", f"must list at least two classes (strings, numbers or booleans), got {classes!r}")
        try:
            class_set = ClassSet(classes)
        except (TypeError, ValueError) as error:
            raise fail("classes", str(error)) from None
        positive = document.get("positive_class")
        if positive is not None and class_set.canonical(positive) is None:
            raise fail("positive_class", f"{positive!r} is not one of the classes {class_set.describe()}")
    features = document["features"]
    if not isinstance(features, dict):
        raise fail("features", f"must be an object of feature name -> profile, got {_type_name(features)}")
    for name, profile in features.items():
        _check_profile(profile, f"feature {name!r}", fail)
    _check_profile(document["prediction_profile"], "prediction_profile", fail)
    if document.get("score_profile") is not None:
        _check_profile(document["score_profile"], "score_profile", fail, kind="numeric")
    class_profiles = document.get("class_score_profiles")
    if class_profiles is not None:
        if not isinstance(class_profiles, list) or len(class_profiles) != len(classes or ()):
            raise fail("class_score_profiles", "must be a list with one numeric profile per class")
        for position, profile in enumerate(class_profiles):
            _check_profile(profile, f"class_score_profiles[{position}]", fail, kind="numeric")
    if document.get("score_calibration") is not None:
        _check_calibration(document["score_calibration"], "score_calibration", fail)
    calibrations = document.get("class_score_calibrations")
    if calibrations is not None:
        if not isinstance(calibrations, list) or len(calibrations) != len(classes or ()):
            raise fail("class_score_calibrations", "must be a list with one calibration per class")
        for position, calibration in enumerate(calibrations):
            _check_calibration(calibration, f"class_score_calibrations[{position}]", fail)
    baseline = document["baseline"]
    if not isinstance(baseline, dict):
        raise fail("baseline", f"must be an object of metric -> number, got {_type_name(baseline)}")
    for metric, value in baseline.items():
        if value is not None and not _finite(value):
            raise fail(f"baseline.{metric}", f"must be a finite number or null, got {value!r}")
    attributes = document.get("attributes")
    if attributes is not None and (not isinstance(attributes, list) or not all(type(a) is str for a in attributes)):
        raise fail("attributes", f"must be a list of attribute names, got {attributes!r}")
    return document


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_calibration(calibration: Any, key: str, fail: Any) -> None:
    """Histogram-binning calibration: increasing edges, one rate in [0, 1] per bin."""
    edges = calibration.get("edges") if isinstance(calibration, dict) else None
    rates = calibration.get("rates") if isinstance(calibration, dict) else None
    if (not isinstance(edges, list) or not all(_finite(e) for e in edges)
            or any(a >= b for a, b in zip(edges, edges[1:]))):
        raise fail(f"{key}.edges", "must be a list of strictly increasing finite numbers")
    if not isinstance(rates, list) or len(rates) != len(edges) + 1 or not all(_finite(r) and 0 <= r <= 1 for r in rates):
        raise fail(f"{key}.rates", f"must be a list of {len(edges) + 1} numbers in [0, 1] (one per bin)")


def _check_profile(profile: Any, key: str, fail: Any, kind: str | None = None) -> None:
    """A numeric or categorical profile the drift and quality detectors can be built from."""
    if not isinstance(profile, dict):
        raise fail(key, f"must be a profile object, got {_type_name(profile)}")
    found = profile.get("kind")
    if found not in ("numeric", "categorical") or (kind is not None and found != kind):
        raise fail(f"{key}.kind", f"must be {kind!r}, got {found!r}" if kind else f"must be 'numeric' or 'categorical', got {found!r}")
    missing_rate = profile.get("missing_rate", 0.0)
    if not _finite(missing_rate) or not 0 <= missing_rate <= 1:
        raise fail(f"{key}.missing_rate", f"must be a number in [0, 1], got {missing_rate!r}")
    count = profile.get("count", 0 if found == "categorical" else None)
    if type(count) is not int or count < 0:
        raise fail(f"{key}.count", f"must be an integer >= 0, got {count!r}")
    if found == "categorical":
        categories, other = profile.get("categories"), profile.get("other") or 0.0
        if not isinstance(categories, dict):
            raise fail(f"{key}.categories", f"must be an object of category -> fraction, got {_type_name(categories)}")
        fractions: Any = [*categories.values(), other]
    else:
        edges, fractions = profile.get("edges"), profile.get("fractions")
        if not isinstance(edges, list) or not all(_finite(e) for e in edges):
            raise fail(f"{key}.edges", f"must be a list of finite numbers, got {edges!r}")
        if any(a >= b for a, b in zip(edges, edges[1:])):
            raise fail(f"{key}.edges", "must be strictly increasing")
        if not isinstance(fractions, list) or len(fractions) != len(edges) + 1:
            raise fail(f"{key}.fractions", f"must be a list of {len(edges) + 1} fractions (one more than the edges)")
        bin_means = profile.get("bin_means")
        if bin_means is not None and (not isinstance(bin_means, list) or len(bin_means) != len(fractions)
                                      or not all(m is None or _finite(m) for m in bin_means)):
            raise fail(f"{key}.bin_means", f"must be a list of {len(fractions)} finite numbers")
        for stat in ("mean", "std", "min", "max"):
            if profile.get(stat) is not None and not _finite(profile[stat]):
                raise fail(f"{key}.{stat}", f"must be a finite number or null, got {profile[stat]!r}")
    if not all(_finite(f) and f >= 0 for f in fractions):
        raise fail(f"{key}.fractions", "must be finite numbers >= 0")
    if sum(fractions) <= 0:
        raise fail(f"{key}.fractions", "are all zero: the profile is empty")


def is_mlflow_uri(location: str | Path) -> bool:
    """A ``runs:/`` or ``models:/`` reference: :mod:`tripwire.tracking` resolves it, never this module."""
    return str(location).startswith(("runs:/", "models:/"))


def load_reference(location: str | Path) -> dict[str, Any]:
    """Load a reference from a local JSON file.

    MLflow URIs are resolved before the engine is built, by :func:`tripwire.tracking.resolve_config`
    (every runner does): this module, and so the engine, never reaches MLflow.
    """
    if is_mlflow_uri(location):
        raise ReferenceError(f"{location}: an MLflow reference reached the engine unresolved; resolve it first with "
                             f"tripwire.tracking.resolve_config(config) and pass Engine(config, references=...)")
    path = Path(location)
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReferenceError(f"{path}: no such reference file (build one with `tripwire reference build`)") from None
    except OSError as error:  # a directory, no permission
        raise ReferenceError(f"{path}: cannot read the reference: {error.strerror or error}") from None
    except orjson.JSONDecodeError as error:
        raise ReferenceError(f"{path}: not valid JSON: {error}") from None
    return validate_reference(document, str(path))
