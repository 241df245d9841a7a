"""Config loading: defaults, the shipped config.toml, bounds, unknown keys, CLI overrides."""

from __future__ import annotations

import dataclasses

import pytest

from edge.config import Config, ConfigError, load_config, override
from tests.conftest import ROOT


def test_shipped_config_documents_every_key_with_its_default():
    import tomllib

    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = Config()
    for section in dataclasses.fields(Config):
        expected = {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        assert set(shipped[section.name]) == expected, section.name
    assert load_config(ROOT / "config.toml") == defaults


@pytest.mark.parametrize("text, message", [
    ("[detector]\nscale_factor = 0.9\n", "detector.scale_factor must be > 1.0, got 0.9"),
    ("[detector]\nscale_factr = 1.2\n", "unknown config key detector.scale_factr"),
    ("[detectr]\n", "unknown config key detectr"),
    ("[capture]\nring_slots = 'many'\n", "capture.ring_slots must be int, got str"),
    ("[capture]\nlive = 'sometimes'\n", "capture.live must be one of"),
    ("[detector]\nmin_face = 0\n", "detector.min_face must be > 0.0"),
    ("[render]\nlatency = 1\n", "render.latency must be bool"),
    ("detector = 3\n", "config key detector must be a table"),
    ("[detector\n", "not valid TOML"),
])
def test_bad_values_are_rejected_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)


@pytest.mark.parametrize("text", ["", "[detector]\nscale_factor = 1.3\nmin_neighbors = 5\n", "[capture]\nfps = 30\n"])
def test_good_values_load(tmp_path, text):
    path = tmp_path / "good.toml"
    path.write_text(text)
    config = load_config(path)
    assert isinstance(config.capture.fps, float)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_override_is_validated():
    config = override(Config(), "render", probabilities=True)
    assert config.render.probabilities is True
    with pytest.raises(ConfigError, match="capture.live must be one of"):
        override(Config(), "capture", live="maybe")
