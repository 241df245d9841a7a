"""Config loading: defaults, the shipped config.toml, bounds, unknown keys, CLI overrides."""

from __future__ import annotations

import dataclasses

import pytest

from edge.config import Config, ConfigError, load_config, override, set_key
from tests.conftest import ROOT


def documented_keys(table: dict, prefix: str = "") -> set[str]:
    """Every key path of a parsed TOML table, nested tables included."""
    keys = set()
    for key, value in table.items():
        keys |= documented_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def settings_keys(settings: object, prefix: str = "") -> set[str]:
    """Every key path of a settings dataclass, nested tables included."""
    keys = set()
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        keys |= settings_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else {f"{prefix}{f.name}"}
    return keys


def test_shipped_config_documents_every_key_with_its_default():
    from edge.config import tomllib  # tomli on Python 3.10

    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    assert documented_keys(shipped) == settings_keys(Config())
    assert load_config(ROOT / "config.toml") == Config()


@pytest.mark.parametrize("text, message", [
    ("[detector.haar]\nscale_factor = 0.9\n", "detector.haar.scale_factor must be > 1.0, got 0.9"),
    ("[detector.haar]\nscale_factr = 1.2\n", "unknown config key detector.haar.scale_factr"),
    ("[detector]\nscale_factor = 1.2\n", "config key detector.scale_factor moved: it is now detector.haar.scale_factor"),
    ("[detector.haar]\ntrack = false\n", "config key detector.haar.track was renamed: it is now detector.haar.follow"),
    ("[detector.haar]\nmax_missed = 5\n", "config key detector.haar.max_missed was renamed: it is now detector.haar.max_lost"),
    ("[detector]\ntrack_margin = 0.2\n", "config key detector.track_margin was renamed: it is now detector.haar.follow_margin"),
    ("[detector]\nkind = 'yolo'\n", "config key detector.kind must be one of ['haar'"),
    ("[detector]\nhaar = 1\n", "config key detector.haar must be a table"),
    ("[detectr]\n", "unknown config key detectr"),
    ("[capture]\nring_slots = 'many'\n", "capture.ring_slots must be int, got str"),
    ("[capture]\nlive = 'sometimes'\n", "capture.live must be one of"),
    ("[detector.haar]\nmin_face = 0\n", "detector.haar.min_face must be > 0.0"),
    ("[render]\nlatency = 1\n", "render.latency must be bool"),
    ("detector = 3\n", "config key detector must be a table"),
    ("[detector\n", "not valid TOML"),
])
def test_bad_values_are_rejected_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)


@pytest.mark.parametrize("text, values", [
    ("", {}),
    ("[detector.haar]\nscale_factor = 1.3\nmin_neighbors = 5\n", {"detector.haar.scale_factor": 1.3,
                                                                  "detector.haar.min_neighbors": 5}),
    ("[capture]\nfps = 30\n", {"capture.fps": 30.0}),  # an integer where a float is due: taken as the float
    ("[detector]\nkind = 'blazeface'\nthreads = 1\n", {"detector.kind": "blazeface", "detector.threads": 1}),
])
def test_good_values_load(tmp_path, text, values):
    path = tmp_path / "good.toml"
    path.write_text(text)
    config = load_config(path)
    expected = Config()
    for key, value in values.items():
        expected = set_key(expected, key, value)
    assert config == expected
    assert (config == Config()) == (not values)  # each value set is not its default: the file was read
    assert type(config.capture.fps) is float


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_override_is_validated():
    config = override(Config(), "render", probabilities=True)
    assert config.render.probabilities is True
    with pytest.raises(ConfigError, match="capture.live must be one of"):
        override(Config(), "capture", live="maybe")


def test_override_reaches_a_nested_table_and_names_its_path():
    config = override(Config(), "detector.haar", max_lost=7)
    assert config.detector.haar.max_lost == 7 and config.detector.haar.min_face == Config().detector.haar.min_face
    with pytest.raises(ConfigError, match="detector.haar.max_lost must be <= 300"):
        override(Config(), "detector.haar", max_lost=1000)
    with pytest.raises(ConfigError, match="config key detector.min_face moved: it is now detector.haar.min_face"):
        override(Config(), "detector", min_face=0.1)
