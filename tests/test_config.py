"""Configuration: the smallest file works, defaults are documented values, every mistake names its key."""

import pytest

from tripwire.config import DEFAULT_THRESHOLDS, MODEL_KEYS, ConfigError, Threshold, load_config, parse_config


def test_smallest_config_gets_every_default(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[[models]]\nname = "fuel-efficiency"\nreference = "reference.json"\n')
    config = load_config(path)
    model = config.models[0]
    assert model.reference == str(tmp_path / "reference.json")
    for key, (_parser, default, _doc) in MODEL_KEYS.items():
        if default is not None and key not in ("thresholds", "signals", "detectors"):
            value = getattr(model, key)
            assert (tuple(value) if isinstance(value, tuple) else value) == default, key
    assert model.threshold("psi", "feature:weight") == DEFAULT_THRESHOLDS["psi"]


def test_overrides_per_model_and_per_signal():
    config = parse_config({
        "defaults": {"window_events": 500, "thresholds": {"psi": {"warning": 0.2}}},
        "models": [{"name": "m", "reference": "r.json", "min_samples": 10,
                    "signals": {"feature:weight": {"psi": {"critical": 0.5}}, "feature:age": {"enabled": False}}}],
    })
    model = config.models[0]
    assert model.window_events == 500 and model.min_samples == 10
    assert model.threshold("psi", "feature:height") == Threshold(0.2, 0.25)
    assert model.threshold("psi", "feature:weight") == Threshold(0.1, 0.5)
    assert not model.enabled("drift", "feature:age") and model.enabled("drift", "feature:weight")


@pytest.mark.parametrize("data, message", [
    ({"models": [{"name": "m", "reference": "r", "window_evnts": 5}]}, "models[0].window_evnts: unknown key; allowed:"),
    ({"models": [{"name": "m", "reference": "r", "window_events": "many"}]}, "models[0].window_events must be a positive integer, got 'many'"),
    ({"models": [{"name": "m", "reference": "r", "window_events": 0}]}, "models[0].window_events must be a positive integer, got 0"),
    ({"models": [{"name": "m"}]}, "models[0].reference is required"),
    ({"models": []}, "'models' must be a non-empty array"),
    ({"modles": []}, "unknown top-level key 'modles'"),
    ({"models": [{"name": "m", "reference": "r", "drift_statistic": "kl"}]}, "models[0].drift_statistic must be one of 'psi', 'js', 'wasserstein'"),
    ({"models": [{"name": "m", "reference": "r", "thresholds": {"psii": {"warning": 1}}}]}, "models[0].thresholds.psii: unknown detector 'psii'"),
    ({"models": [{"name": "m", "reference": "r", "thresholds": {"psi": {"warn": 1}}}]}, "models[0].thresholds.psi.warn: unknown key; allowed: warning, critical"),
    ({"models": [{"name": "m", "reference": "r", "detectors": {"drfit": False}}]}, "models[0].detectors has unknown detector family 'drfit'; allowed: drift"),
    ({"models": [{"name": "m", "reference": "r"}, {"name": "m", "reference": "s"}]}, "models[].name must be unique; repeated: m"),
    ({"models": [{"name": "m", "reference": "r"}], "monitor": {"rejection_windw": 3}}, "monitor.rejection_windw: unknown key"),
])
def test_every_mistake_names_the_key_and_what_is_allowed(data, message):
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert message in str(error.value)


def test_invalid_toml_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[models]\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "missing.toml")


def test_threshold_directions():
    above, below = Threshold(0.1, 0.25), Threshold(0.8, 0.6, "below")
    assert [above.severity(v) for v in (0.05, 0.1, 0.3)] == [None, "warning", "critical"]
    assert [below.severity(v) for v in (0.9, 0.8, 0.5)] == [None, "warning", "critical"]


def test_worker_stages_are_input_and_merge_unless_the_file_or_environment_picks(tmp_path, monkeypatch, capsys):
    from tripwire.cli import main
    from tripwire.streams.topics import worker_settings

    models = {"models": [{"name": "m", "reference": "r.json"}]}
    assert parse_config(models).worker.stages == ("input", "merge")
    config = parse_config({**models, "worker": {"stages": ["merge"]}})
    assert config.worker.stages == ("merge",)
    assert worker_settings(config, {"TRIPWIRE_WORKER_STAGES": "input, merge"}).stages == ("input", "merge")
    for bad in ([], ["input", "join"], "input", [1]):
        with pytest.raises(ConfigError, match=r"worker\.stages"):
            parse_config({**models, "worker": {"stages": bad}})
    with pytest.raises(ConfigError, match="TRIPWIRE_WORKER_STAGES"):
        worker_settings(config, {"TRIPWIRE_WORKER_STAGES": "merge,judge"})
    # Merge only, and no model sharded: nothing to run, exit 2 before any broker is reached.
    path = tmp_path / "monitor.toml"
    path.write_text('[[models]]\nname = "m"\nreference = "r.json"\n\n[kafka]\nbootstrap_servers = "127.0.0.1:9"\n')
    monkeypatch.setenv("TRIPWIRE_WORKER_STAGES", "merge")
    assert main(["worker", "--config", str(path)]) == 2
    assert "worker.stages" in capsys.readouterr().err
