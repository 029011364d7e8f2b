"""Bad configuration: exit code 2 before any work, with a message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guards_files import CONFIG, replay, write_setup


@pytest.fixture
def setup(tmp_path):
    return write_setup(tmp_path)


def replay_with(setup, tmp_path, config_text: str) -> tuple[int, str]:
    config, _reference, events = setup
    config.write_text(config_text)
    before = events.read_bytes()
    out = tmp_path / "out" / "alerts.jsonl"
    code, _stdout, stderr = replay(config, events, out)
    assert events.read_bytes() == before and not out.exists()  # nothing was done
    return code, stderr


@pytest.mark.parametrize("extra, key", [
    ("thresholds = 5\n", "models[0].thresholds must be a table, got 5"),
    ("signals = 5\n", "models[0].signals must be a table"),
    ("window_seconds = nan\n", "models[0].window_seconds must be a number >= 0 and finite, got nan"),
    ("window_seconds = inf\n", "models[0].window_seconds must be a number >= 0 and finite, got inf"),
    ("window_seconds = -5\n", "models[0].window_seconds must be a number >= 0"),
    ("label_ttl_seconds = -inf\n", "models[0].label_ttl_seconds must be a number >= 0"),
    ("drift_alpha = nan\n", "models[0].drift_alpha must be a number strictly between 0 and 1"),
    ("[models.thresholds]\npsi = {warning = nan}\n", "models[0].thresholds.psi.warning must be a finite number"),
    ("[models.thresholds]\npsi = {critical = inf}\n", "models[0].thresholds.psi.critical must be a finite number"),
    ("[models.thresholds]\npsi = {warning = \"high\"}\n", "models[0].thresholds.psi.warning must be a finite number"),
    # drift statistics alert above the limit: critical must not be below warning
    ("[models.thresholds]\npsi = {warning = 0.3, critical = 0.2}\n",
     "models[0].thresholds.psi: warning 0.3 must be at most critical 0.2"),
    # one level moved past the default of the other
    ("[models.thresholds]\naccuracy = {warning = 0.5}\n",
     "models[0].thresholds.accuracy: warning 0.5 must be at most critical 0.1"),
    # a ratio alerts below the limit: critical must not be above warning
    ("[models.thresholds]\ndisparate_impact_ratio = {warning = 0.5, critical = 0.7}\n",
     "models[0].thresholds.disparate_impact_ratio: warning 0.5 must be at least critical 0.7"),
    ("[models.signals.\"feature:x\"]\npsi = {warning = 0.9, critical = 0.5}\n",
     "models[0].signals.'feature:x'.psi: warning 0.9 must be at most critical 0.5"),
    ("performance_metrics = [\"acuracy\"]\n", "models[0].performance_metrics has unknown metric 'acuracy'"),
    ("change_streams = [\"errors\"]\n", "models[0].change_streams has unknown stream 'errors'"),
    ("[models.signals.weight]\nenabled = false\n", "models[0].signals.'weight': unknown signal 'weight'"),
])
def test_a_bad_model_value_names_the_file_and_key(setup, tmp_path, extra, key):
    code, stderr = replay_with(setup, tmp_path, CONFIG + extra)
    assert code == 2
    assert f"{setup[0]}: " in stderr and key in stderr, stderr


@pytest.mark.parametrize("extra, key", [
    # names that exist in general, but not for this model's reference
    ("performance_metrics = [\"mae\"]\n", "models[0] (m, reference "),
    ("change_streams = [\"feature:weight\"]\n", ".change_streams: 'feature:weight' is not in the reference"),
    ("attributes = [\"regoin\"]\n", ".attributes: 'regoin' is not in the reference; allowed: region"),
    ("[models.signals.\"feature:weight\"]\nenabled = false\n", ".signals.'feature:weight': 'feature:weight' is not in"),
    ("[models.signals.\"fairness:age\"]\nenabled = false\n", ".signals.'fairness:age': 'fairness:age' is not in"),
    ("[models.signals.\"performance:macro_f1\"]\nenabled = false\n", "'performance:macro_f1' is not in the reference"),
])
def test_names_the_reference_does_not_know_stop_the_start(setup, tmp_path, extra, key):
    code, stderr = replay_with(setup, tmp_path, CONFIG + extra)
    assert code == 2
    assert str(setup[0]) in stderr and str(setup[1]) in stderr and key in stderr, stderr


def test_performance_metric_of_another_kind_of_model_is_named(setup, tmp_path):
    code, stderr = replay_with(setup, tmp_path, CONFIG + "performance_metrics = [\"mae\"]\n")
    assert code == 2 and ".performance_metrics: 'mae' is not in the reference; allowed: accuracy, precision" in stderr


@pytest.mark.parametrize("text, key", [
    ("monitor = 5\n" + CONFIG, "monitor must be a table, got 5"),
    ("[defaults]\nthresholds = 5\n" + CONFIG, "defaults.thresholds must be a table, got 5"),
    ("[monitor]\nrejection_window = nan\n" + CONFIG, "monitor.rejection_window must be a positive integer"),
])
def test_a_bad_table_names_the_file_and_key(setup, tmp_path, text, key):
    code, stderr = replay_with(setup, tmp_path, text)
    assert code == 2 and f"{setup[0]}: {key}" in stderr, stderr


def test_a_directory_as_config(setup, tmp_path):
    _config, _reference, events = setup
    code, _out, stderr = replay(tmp_path, events, tmp_path / "out.jsonl")
    assert code == 2 and f"{tmp_path}: is a directory, not a configuration file" in stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_a_non_utf8_config(setup, tmp_path):
    config, _reference, events = setup
    config.write_bytes(CONFIG.encode() + b"# caf\xe9\n")
    code, _out, stderr = replay(config, events, tmp_path / "out.jsonl")
    assert code == 2 and f"{config}: not UTF-8 text" in stderr


def test_a_valid_config_still_runs(setup, tmp_path):
    config, _reference, events = setup
    config.write_text(CONFIG + "performance_metrics = [\"accuracy\", \"log_loss\"]\nattributes = [\"region\"]\n"
                      "change_streams = [\"error\", \"feature:x\"]\n"
                      "[models.thresholds]\npsi = {warning = 0.2, critical = 0.2}\n"
                      "disparate_impact_ratio = {warning = 0.9, critical = false}\n"
                      "[models.signals.\"feature:color\"]\nenabled = false\n"
                      "[models.signals.\"fairness:region\"]\nenabled = false\n")
    code, stdout, stderr = replay(config, events, tmp_path / "out.jsonl")
    assert code == 0, stderr
    assert "records 1,195" in stdout


def test_per_class_metrics_of_a_multiclass_model_are_checked_against_its_classes():
    from tripwire.config import ConfigError, check_references, parse_config

    reference = {"task": "classification", "classes": ["a", "b", "c"], "features": {"x": {}}, "attributes": []}

    def check(**model):
        config = parse_config({"models": [{"name": "m", "reference": "r.json", **model}]}, where="monitor.toml")
        config.source = Path("monitor.toml")
        check_references(config, {"m": reference})

    check(performance_metrics=["macro_f1", "recall:b"], signals={"performance:f1:c": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"monitor.toml: models\[0\] \(m, reference r.json\).performance_metrics: "
                                          r"'recall:z' is not in the reference"):
        check(performance_metrics=["recall:z"])
    with pytest.raises(ConfigError, match="'performance:f1:z' is not in the reference"):
        check(signals={"performance:f1:z": {"enabled": False}})
    with pytest.raises(ConfigError, match="models\\[0\\].performance_metrics has unknown metric 'roc:a'"):
        check(performance_metrics=["roc:a"])
    with pytest.raises(ConfigError, match="positive_class 'd' is not one of the reference's classes"):
        check(positive_class="d")
