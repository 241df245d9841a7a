"""Configuration: config.toml loaded into validated, typed settings objects.

Each key is documented once, beside its default in config.toml (a test checks that it has every key).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on older Raspberry Pi OS
    import tomli as tomllib

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the key path."""


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field whose value is checked against bounds or choices on load (config.toml documents it)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "choices": choices})


@dataclass(frozen=True)
class CaptureConfig:
    ring_slots: int = bounded(8, ge=3, le=256)
    live: str = bounded("auto", choices=("auto", "yes", "no"))
    width: int = bounded(0, ge=0, le=7680)
    height: int = bounded(0, ge=0, le=4320)
    fps: float = bounded(0.0, ge=0.0, le=240.0)
    stall_timeout_s: float = bounded(5.0, gt=0.0, le=600.0)
    reopen_attempts: int = bounded(5, ge=0, le=1000)
    reopen_backoff_s: float = bounded(0.5, gt=0.0, le=60.0)
    image_fps: float = bounded(1.0, gt=0.0, le=1000.0)
    decode_threads: int = bounded(1, ge=0, le=64)


@dataclass(frozen=True)
class HaarConfig:
    cascade: str = bounded("")
    verify_cascade: str = bounded("haarcascade_frontalface_alt2.xml")
    confirm_frames: int = bounded(3, ge=1, le=30)
    scale_factor: float = bounded(1.1, gt=1.0, le=2.0)
    scan_scale_factor: float = bounded(1.2, gt=1.0, le=2.0)
    min_neighbors: int = bounded(4, ge=0, le=50)
    min_face: float = bounded(0.05, gt=0.0, le=1.0)
    max_face: float = bounded(1.0, gt=0.0, le=1.0)
    downscale: float = bounded(0.0, ge=0.0, le=1.0)
    scan_slices: int = bounded(14, ge=1, le=32)
    follow: bool = bounded(True)
    follow_margin: float = bounded(0.15, ge=0.1, le=2.0)
    max_lost: int = bounded(30, ge=0, le=300)


@dataclass(frozen=True)
class BlazeFaceConfig:
    model: str = bounded("")
    min_score: float = bounded(0.65, gt=0.0, le=1.0)
    crop_min_score: float = bounded(0.75, gt=0.0, le=1.0)
    nms_iou: float = bounded(0.3, gt=0.0, le=1.0)
    tiles: int = bounded(2, ge=0, le=8)
    threads: int = bounded(1, ge=1, le=64)


DETECTOR_KINDS = ("haar", "blazeface")  # each names its settings table below and a backend in edge.detect.BACKENDS


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = bounded("haar", choices=DETECTOR_KINDS)
    threads: int = bounded(0, ge=0, le=64)
    haar: HaarConfig = field(default_factory=HaarConfig)
    blazeface: BlazeFaceConfig = field(default_factory=BlazeFaceConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = bounded("")
    threads: int = bounded(1, ge=1, le=64)
    flip: bool = bounded(False)


@dataclass(frozen=True)
class RenderConfig:
    probabilities: bool = bounded(False)
    latency: bool = bounded(True)
    fps_window_s: float = bounded(1.0, gt=0.0, le=60.0)
    codec: str = bounded("h264")
    preset: str = bounded("ultrafast", choices=X264_PRESETS)
    encoder_threads: int = bounded(0, ge=0, le=64)


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = bounded(True)
    max_missed: int = bounded(10, ge=0, le=1000)
    min_iou: float = bounded(0.1, ge=0.0, le=1.0)
    max_distance: float = bounded(0.5, ge=0.0, le=10.0)
    velocity_weight: float = bounded(0.5, ge=0.0, le=1.0)


@dataclass(frozen=True)
class SmoothingConfig:
    enabled: bool = bounded(True)
    method: str = bounded("ema", choices=("ema", "window"))
    half_life_s: float = bounded(0.15, gt=0.0, le=60.0)
    window_s: float = bounded(0.4, gt=0.0, le=60.0)
    hysteresis: float = bounded(0.15, ge=0.0, le=1.0)
    min_confidence: float = bounded(0.4, ge=0.0, le=1.0)


@dataclass(frozen=True)
class ServeConfig:
    pace: bool = bounded(True)
    jpeg_quality: int = bounded(80, ge=10, le=100)
    stream_fps: float = bounded(30.0, ge=0.0, le=240.0)
    send_timeout_s: float = bounded(3.0, gt=0.0, le=3600.0)


@dataclass(frozen=True)
class PipelineConfig:
    watchdog_s: float = bounded(5.0, gt=0.0, le=600.0)
    startup_timeout_s: float = bounded(60.0, gt=0.0, le=3600.0)


@dataclass(frozen=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


def check_value(path: str, f: dataclasses.Field, value: Any) -> Any:
    """Type- and bound-check one value; return it converted to the field's type."""
    expected = type(f.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(
            f"config key {path} must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"config key {path} must be one of {list(meta['choices'])}, got {value!r}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"config key {path} must be > {meta['gt']}, got {value}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"config key {path} must be >= {meta['ge']}, got {value}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"config key {path} must be <= {meta['le']}, got {value}")
    return value


def table_type(f: dataclasses.Field) -> type | None:
    """The settings dataclass of a field that is a table of its own, else None."""
    section_type = f.default_factory
    return section_type if isinstance(section_type, type) and dataclasses.is_dataclass(section_type) else None


# Keys renamed (the detector follows faces; the tracker keeps tracks), and their older flat paths: old -> new.
RENAMED = {f"detector.{table}{old}": f"detector.haar.{new}" for table in ("haar.", "")
           for old, new in (("track", "follow"), ("track_margin", "follow_margin"), ("max_missed", "max_lost"))}


def unknown_key(cls: type, key: str, path: str) -> ConfigError:
    """The error for a key ``cls`` does not have; it names the key that replaced it, or the table that has it now."""
    if path in RENAMED:
        return ConfigError(f"config key {path} was renamed: it is now {RENAMED[path]}")
    fields = dataclasses.fields(cls)
    homes = [f"{path[:-len(key)]}{f.name}.{key}" for f in fields
             if table_type(f) and key in {g.name for g in dataclasses.fields(table_type(f))}]
    if homes:
        return ConfigError(f"config key {path} moved: it is now {' or '.join(homes)}")
    return ConfigError(f"unknown config key {path} (known: {', '.join(f.name for f in fields)})")


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build a (nested) settings dataclass from a dict, rejecting unknown keys by path."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise unknown_key(cls, key, path)
        f = fields[key]
        section_type = table_type(f)
        if section_type is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path} must be a table, got {value!r}")
            values[key] = build(section_type, value, prefix=f"{path}.")
        else:
            values[key] = check_value(path, f, value)
    return cls(**values)


def load_config(path: str | Path | None) -> Config:
    """Load and validate a TOML config; None gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    except OSError as exc:  # unreadable: permissions, an I/O error
        raise ConfigError(f"config file cannot be read: {path} ({exc.strerror or exc})") from None
    return build(Config, data)


def override(config: Any, section: str, **values: Any) -> Any:
    """A copy of config with some keys of one section (e.g. "render", "detector.haar") replaced, validated like the file."""
    return replaced(config, section.split("."), values, "")


def replaced(settings: Any, tables: list[str], values: dict[str, Any], prefix: str) -> Any:
    """``settings`` with ``values`` set in its table reached through ``tables`` (key paths start at ``prefix``)."""
    head, path = tables[0], f"{prefix}{tables[0]}"
    current = getattr(settings, head)
    if len(tables) > 1:
        return dataclasses.replace(settings, **{head: replaced(current, tables[1:], values, f"{path}.")})
    fields = {f.name: f for f in dataclasses.fields(current)}
    for key in values:
        if key not in fields:
            raise unknown_key(type(current), key, f"{path}.{key}")
    checked = {k: check_value(f"{path}.{k}", fields[k], v) for k, v in values.items()}
    return dataclasses.replace(settings, **{head: dataclasses.replace(current, **checked)})


def set_key(config: Any, path: str, value: Any) -> Any:
    """A copy of config with the key at a dotted path (``detector.haar.min_neighbors``) set, validated like the file.

    A table's path takes a dict of its keys, as a TOML table would (``"detector", {"kind": "haar"}``).
    """
    return assigned(config, path.split("."), value, "")


def assigned(settings: Any, keys: list[str], value: Any, prefix: str) -> Any:
    """``settings`` with ``value`` at the key reached through ``keys`` (key paths start at ``prefix``)."""
    head, path = keys[0], f"{prefix}{keys[0]}"
    fields = {f.name: f for f in dataclasses.fields(settings)}
    if head not in fields:
        raise unknown_key(type(settings), head, path)
    f = fields[head]
    section_type = table_type(f)
    if section_type is None:
        if len(keys) > 1:
            raise ConfigError(f"config key {path} is a value, not a table: there is no {path}.{keys[1]}")
        return dataclasses.replace(settings, **{head: check_value(path, f, value)})
    table = getattr(settings, head)
    if len(keys) > 1:
        return dataclasses.replace(settings, **{head: assigned(table, keys[1:], value, f"{path}.")})
    if not isinstance(value, dict):
        first = dataclasses.fields(section_type)[0].name
        raise ConfigError(f"config key {path} is a table, not a value: set its keys, e.g. {path}.{first}, "
                          f"got {value!r}")
    for key, item in value.items():
        table = assigned(table, [key], item, f"{path}.")
    return dataclasses.replace(settings, **{head: table})


def parse_setting(text: str) -> tuple[str, Any]:
    """``section.key=value`` (``--set``) as its key path and value: a TOML value, else the text as a string."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path or any(not part for part in path.split(".")):
        raise ConfigError(f"--set takes section.key=value, e.g. detector.haar.min_face=0.1, got {text!r}")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:  # a bare word (haar, fer2013-mini-xception): the text itself
        value = raw.strip()
    return path, value
