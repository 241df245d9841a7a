"""The model contract: the sidecar metadata that lets a .tflite model describe itself."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METADATA_FORMAT = "fer-edge-model/1"
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
COLORS = ("grayscale",)


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


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to use a model correctly, stored beside it as <stem>.json.

    The input pixel x in [0, 255] is normalised as ``(x / 255 - mean) / std`` before
    quantization. ``face_margin`` is the fraction of the face box added on every side
    before cropping, matching how the training faces were framed.
    """

    labels: tuple[str, ...]
    input_height: int
    input_width: int
    color: str = "grayscale"
    mean: float = 0.0
    std: float = 1.0
    face_margin: float = 0.0
    input_quant: TensorQuant | None = None
    output_quant: TensorQuant | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.std <= 0:
            raise ModelError(f"model normalisation std must be > 0, got {self.std}")
        if not 0.0 <= self.face_margin <= 1.0:
            raise ModelError(f"model face_margin must be in [0, 1], got {self.face_margin}")

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV's resize takes."""
        return (self.input_width, self.input_height)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels -> float32 network input, as the model was trained."""
        return ((pixels.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return {"format": METADATA_FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "metadata") -> ModelInfo:
        if data.get("format") != METADATA_FORMAT:
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
            fields["labels"] = tuple(fields["labels"])
            return cls(**fields)
        except (TypeError, KeyError) as exc:
            raise ModelError(f"{source}: malformed metadata ({exc})") from None


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
