"""Configuration: config.toml loaded into validated, typed settings objects."""

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
            le: float | None = None, choices: tuple[Any, ...] | None = None, doc: str = "") -> Any:
    """A dataclass field whose value is checked against bounds or choices on load."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "choices": choices, "doc": doc})


@dataclass(frozen=True)
class CaptureConfig:
    ring_slots: int = bounded(8, ge=3, le=256, doc="shared-memory frame slots")
    live: str = bounded("auto", choices=("auto", "yes", "no"),
                        doc="drop stale frames (live) or never drop (file)")
    width: int = bounded(0, ge=0, le=7680, doc="camera width to request, 0 = camera default")
    height: int = bounded(0, ge=0, le=4320, doc="camera height to request, 0 = camera default")
    fps: float = bounded(0.0, ge=0.0, le=240.0, doc="camera fps to request, 0 = camera default")
    stall_timeout_s: float = bounded(5.0, gt=0.0, le=600.0)
    reopen_attempts: int = bounded(5, ge=0, le=1000)
    reopen_backoff_s: float = bounded(0.5, gt=0.0, le=60.0)
    image_fps: float = bounded(1.0, gt=0.0, le=1000.0, doc="timestamp rate for image sources")
    decode_threads: int = bounded(1, ge=0, le=64, doc="FFmpeg threads decoding a file or stream; 0 = one per core")


@dataclass(frozen=True)
class HaarConfig:
    cascade: str = bounded("", doc="Haar cascade XML; empty = OpenCV's frontal face")
    verify_cascade: str = bounded("haarcascade_frontalface_alt2.xml",
                                  doc="second cascade that confirms a new face at once; empty = none")
    confirm_frames: int = bounded(3, ge=1, le=30,
                                  doc="consecutive frames an unverified new face must be found in")
    scale_factor: float = bounded(1.1, gt=1.0, le=2.0, doc="size step when following a face and in still images")
    scan_scale_factor: float = bounded(1.2, gt=1.0, le=2.0, doc="size step of the full-frame scans for new faces")
    min_neighbors: int = bounded(4, ge=0, le=50)
    min_face: float = bounded(0.05, gt=0.0, le=1.0, doc="smallest face, fraction of frame height")
    max_face: float = bounded(1.0, gt=0.0, le=1.0, doc="largest face, fraction of frame height")
    downscale: float = bounded(0.0, ge=0.0, le=1.0,
                               doc="most resolution the full scans use; 0 = what min_face needs")
    scan_slices: int = bounded(12, ge=1, le=32, doc="frames one full scan is spread over")
    track: bool = bounded(True, doc="search around last frame's faces every frame")
    track_margin: float = bounded(0.2, ge=0.1, le=2.0, doc="search region around a face, x its size")
    max_missed: int = bounded(3, ge=0, le=100, doc="frames a lost face is still searched for")


DETECTOR_KINDS = ("haar",)  # each names its settings table below and a backend in edge.detect.BACKENDS


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = bounded("haar", choices=DETECTOR_KINDS, doc="face detector backend")
    threads: int = bounded(0, ge=0, le=64, doc="OpenCV threads in the detector; 0 = OpenCV default (all cores)")
    haar: HaarConfig = field(default_factory=HaarConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = bounded("", doc="a shipped model's name or a TFLite path; empty = the shipped default")
    threads: int = bounded(1, ge=1, le=64)
    flip: bool = bounded(False, doc="average each face's output with its mirror image's (2x the inference)")


@dataclass(frozen=True)
class RenderConfig:
    probabilities: bool = bounded(False, doc="draw per-face probability bars")
    latency: bool = bounded(True, doc="draw per-stage latency")
    fps_window_s: float = bounded(1.0, gt=0.0, le=60.0)
    codec: str = bounded("h264", doc="h264 (PyAV, the video extra; mp4v without it) or an OpenCV FourCC")
    preset: str = bounded("ultrafast", choices=X264_PRESETS, doc="x264 preset of h264 videos: CPU against size")
    encoder_threads: int = bounded(0, ge=0, le=64, doc="x264 threads; 0 = x264's default (about 1.5 per core)")


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = bounded(True, doc="give every face a track id that persists while it stays in view")
    max_missed: int = bounded(10, ge=0, le=1000, doc="processed frames a track survives without its face")
    min_iou: float = bounded(0.1, ge=0.0, le=1.0, doc="a face may join a track at this IoU with its prediction")
    max_distance: float = bounded(0.5, ge=0.0, le=10.0,
                                  doc="... or with its centre this close, x the track's face size")
    velocity_weight: float = bounded(0.5, ge=0.0, le=1.0,
                                     doc="weight of the newest motion in the velocity; 0 = no prediction")


@dataclass(frozen=True)
class SmoothingConfig:
    enabled: bool = bounded(True, doc="smooth each track's probabilities and label (needs the tracker)")
    method: str = bounded("ema", choices=("ema", "window"), doc="exponential or sliding-window mean")
    half_life_s: float = bounded(0.15, gt=0.0, le=60.0, doc="ema: a frame's weight halves after this")
    window_s: float = bounded(0.4, gt=0.0, le=60.0, doc="window: mean of the track's last seconds")
    hysteresis: float = bounded(0.15, ge=0.0, le=1.0, doc="a new label must lead the shown one by this")
    min_confidence: float = bounded(0.4, ge=0.0, le=1.0, doc="below this top probability: 'uncertain'")


@dataclass(frozen=True)
class ServeConfig:
    pace: bool = bounded(True, doc="while serving, play video files at their own frame rate")
    jpeg_quality: int = bounded(80, ge=10, le=100, doc="JPEG quality of the served video")
    stream_fps: float = bounded(30.0, ge=0.0, le=240.0, doc="most frames/s encoded for viewers; 0 = every frame")
    send_timeout_s: float = bounded(3.0, gt=0.0, le=3600.0,
                                    doc="a viewer that takes none of a frame or event this long is dropped")


@dataclass(frozen=True)
class PipelineConfig:
    watchdog_s: float = bounded(5.0, gt=0.0, le=600.0,
                                doc="a stage holding frames that finishes none for this long is stalled")
    startup_timeout_s: float = bounded(60.0, gt=0.0, le=3600.0, doc="how long the workers may take to start")


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


def unknown_key(cls: type, key: str, path: str) -> ConfigError:
    """The error for a key ``cls`` does not have; it names the table that has it now (e.g. a key that moved)."""
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
