"""The model contract: the sidecar metadata that lets a .tflite model describe itself."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METADATA_FORMAT = "fer-edge-model/2"
# /1: grayscale NHWC models only, scalar mean/std; read as /2 with color "gray" and layout NHWC.
READABLE_FORMATS = ("fer-edge-model/1", METADATA_FORMAT)
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
COLORS = ("gray", "rgb", "bgr")  # the channel order the model was trained on
COLOR_ALIASES = {"grayscale": "gray"}  # fer-edge-model/1's name for gray
LAYOUTS = ("NHWC", "NCHW")


class ModelError(ValueError):
    """A model file or its metadata is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class TensorQuant:
    """How one tensor is stored: dtype, and for integer tensors the affine scale/zero point."""

    dtype: str  # "int8", "uint8", "float32", "float16"
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8")


def per_channel(name: str, value: Any) -> tuple[float, ...]:
    """A normalisation constant as a tuple: one value for every channel, or one per channel."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ModelError(f"model normalisation {name} must be a number or a list of numbers, got {value!r}") from None


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to use a model correctly, stored beside it as <stem>.json.

    The face is cut from the frame as a square around the face box grown by ``face_margin`` of
    its size on every side, resized to ``input_height`` x ``input_width`` and converted to
    ``color`` (gray, or the channel order rgb / bgr). A pixel x in [0, 255] of channel c is
    normalised as ``(x / 255 - mean[c]) / std[c]`` (one value serves every channel) and the
    tensor is laid out as ``layout`` (NHWC, or NCHW for channels-first models), then quantized.
    """

    labels: tuple[str, ...]
    input_height: int
    input_width: int
    color: str = "gray"
    layout: str = "NHWC"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    face_margin: float = 0.0
    input_quant: TensorQuant | None = None
    output_quant: TensorQuant | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalised in place (frozen): older sidecars and callers pass "grayscale" and scalar mean/std.
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "color", COLOR_ALIASES.get(self.color, self.color))
        object.__setattr__(self, "mean", per_channel("mean", self.mean))
        object.__setattr__(self, "std", per_channel("std", self.std))
        if len(self.labels) < 2:
            raise ModelError(f"model metadata needs at least 2 labels, got {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ModelError(f"model metadata labels are not unique: {list(self.labels)}")
        if self.input_height < 8 or self.input_width < 8:
            raise ModelError(
                f"model input size must be at least 8x8, got {self.input_height}x{self.input_width}"
            )
        if self.color not in COLORS:
            raise ModelError(f"model colour must be one of {COLORS}, got {self.color!r}")
        if self.layout not in LAYOUTS:
            raise ModelError(f"model layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                wanted = "1 value" if self.channels == 1 else f"1 or {self.channels} values"
                raise ModelError(f"model normalisation {name} needs {wanted} for a {self.color} model, "
                                 f"got {list(values)}")
        if min(self.std) <= 0:
            raise ModelError(f"model normalisation std must be > 0, got {list(self.std)}")
        if not 0.0 <= self.face_margin <= 1.0:
            raise ModelError(f"model face_margin must be in [0, 1], got {self.face_margin}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV's resize takes."""
        return (self.input_width, self.input_height)

    @property
    def crop_shape(self) -> tuple[int, ...]:
        """The shape of one face crop: (h, w) for gray models, (h, w, 3) for colour ones."""
        size = (self.input_height, self.input_width)
        return size if self.channels == 1 else (*size, self.channels)

    def tensor_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The input tensor's shape for ``batch`` faces."""
        h, w, c = self.input_height, self.input_width, self.channels
        return (batch, h, w, c) if self.layout == "NHWC" else (batch, c, h, w)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (..., h, w) or (..., h, w, c) -> float32 values, as the model was trained."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        if self.channels == 1:
            mean, std = mean[0], std[0]
        return ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

    def to_tensor(self, values: np.ndarray) -> np.ndarray:
        """Per-face values (n, *crop_shape) -> the input tensor's layout (n, ...)."""
        if self.channels == 1:
            values = values[..., np.newaxis]
        return values if self.layout == "NHWC" else np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def network_input(self, crops: np.ndarray) -> np.ndarray:
        """uint8 face crops (n, *crop_shape) -> the float network input (for float models and converters)."""
        return self.to_tensor(self.normalize(crops))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("labels", "mean", "std"):
            data[key] = list(getattr(self, key))
        return {"format": METADATA_FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "metadata") -> ModelInfo:
        if data.get("format") not in READABLE_FORMATS:
            raise ModelError(
                f"{source}: unknown metadata format {data.get('format')!r}, expected {METADATA_FORMAT!r}"
            )
        fields = {k: v for k, v in data.items() if k != "format"}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ModelError(f"{source}: unknown metadata keys {unknown}")
        try:
            for key in ("input_quant", "output_quant"):
                if fields.get(key) is not None:
                    fields[key] = TensorQuant(**fields[key])
            return cls(**fields)
        except (TypeError, KeyError) as exc:
            raise ModelError(f"{source}: malformed metadata ({exc})") from None
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None


def metadata_path(model_path: str | Path) -> Path:
    """The sidecar metadata file of a model: same folder, same stem, .json."""
    return Path(model_path).with_suffix(".json")


def save_model_info(info: ModelInfo, model_path: str | Path) -> Path:
    path = metadata_path(model_path)
    path.write_text(json.dumps(info.to_json(), indent=2) + "\n")
    return path


def load_model_info(model_path: str | Path) -> ModelInfo:
    """Read a model's sidecar metadata, with a one-line error for every way it can be wrong."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    path = metadata_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"model metadata not found: {path} (every model needs a sidecar describing its "
            "labels, input size and normalisation; `python -m convert` writes it)"
        )
    return read_metadata(path)


def read_metadata(path: Path) -> ModelInfo:
    """Parse one metadata JSON file (a .tflite's sidecar, or the one train/ writes beside model.keras)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model metadata {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"model metadata {path} must be a JSON object")
    return ModelInfo.from_json(data, source=str(path))
