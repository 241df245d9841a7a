"""One conversion from start to end: Keras model + faces -> .tflite, sidecar metadata, validation report."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from convert import ConvertError
from convert.faces import FaceSet, FaceSplit, collect_faces
from convert.tflite import (
    QUANT_MODES,
    check_keras_file,
    check_probabilities,
    convert_model,
    import_tensorflow,
    keras_probabilities,
    load_keras_model,
    model_classes,
    model_input_shape,
)
from convert.validate import compare, latency_ms, write_report
from edge.classify import Classifier, load_interpreter_class, make_interpreter, tensor_quant
from edge.model import FER2013_LABELS, ModelError, ModelInfo, metadata_path, read_metadata, save_model_info
from edge.version import cpu_name

log = logging.getLogger(__name__)

DEFAULT_MIN_CALIB = 20  # faces
DEFAULT_MAX_CALIB = 500  # faces fed to the converter; more adds time, not accuracy
DEFAULT_MAX_VAL = 2000  # faces compared
LATENCY_THREADS = 1


@dataclass(frozen=True)
class Result:
    """A finished conversion: the report, and the faces with the float model's answers on them."""

    report: dict[str, Any]
    info: ModelInfo
    faces: FaceSplit
    reference_cal: np.ndarray  # Keras float probabilities on the calibration faces
    reference_val: np.ndarray  # ... and on the validation faces


@dataclass(frozen=True)
class Request:
    """Everything one conversion needs; the CLI fills it from its arguments."""

    keras: Path
    out: Path
    quant: str = "int8"
    labels: tuple[str, ...] | None = None  # None: the Keras sidecar's, else FER2013 order
    color: str | None = None  # None: the Keras sidecar's, else gray for 1 channel, rgb for 3
    mean: tuple[float, ...] | None = None  # one value, or one per channel
    std: tuple[float, ...] | None = None
    face_margin: float | None = None
    calib: tuple[Path, ...] = ()
    val: tuple[Path, ...] = ()
    holdout: float = 0.5
    augment: bool = False
    crops: bool = False
    min_calib: int = DEFAULT_MIN_CALIB
    max_calib: int = DEFAULT_MAX_CALIB
    max_val: int = DEFAULT_MAX_VAL
    per_channel: bool = True
    report: Path | None = None  # None: <out stem>.report.json
    source_name: str | None = None  # how reports name the Keras model (default: its path)
    latency_runs: int = 300
    provenance: dict[str, Any] = field(default_factory=dict)  # merged into the sidecar's

    @property
    def report_path(self) -> Path:
        return self.report or self.out.with_name(self.out.stem + ".report.json")


def check_request(request: Request) -> None:
    """Everything that can be checked before TensorFlow is imported (which takes seconds)."""
    if request.quant not in QUANT_MODES:
        raise ConvertError(f"--quant must be one of {', '.join(QUANT_MODES)}, got {request.quant!r}")
    check_keras_file(request.keras)
    if request.out.suffix.lower() != ".tflite":
        raise ConvertError(f"--out must name a .tflite file, got {request.out}")
    if not request.out.parent.is_dir():
        raise ConvertError(f"output folder not found: {request.out.parent}")
    if metadata_path(request.out).resolve() == metadata_path(request.keras).resolve():
        raise ConvertError(
            f"--out {request.out} would overwrite the Keras model's metadata {metadata_path(request.keras)}: "
            f"name the output differently, e.g. {request.out.with_name(request.out.stem + '_int8.tflite')}"
        )
    if request.quant == "int8" and not request.calib:
        raise ConvertError("int8 quantization needs real face images to calibrate on: give --calib PATH...")
    for path in (*request.calib, *request.val):
        if not path.exists():
            raise ConvertError(f"calibration/validation source not found: {path}")
    if request.min_calib < 1:
        raise ConvertError(f"--min-calib must be >= 1, got {request.min_calib}")


def keras_sidecar(keras_path: Path) -> ModelInfo | None:
    """The training run's metadata beside the Keras model (<stem>.json), if there is one."""
    path = metadata_path(keras_path)
    if not path.is_file():
        return None
    log.info("read labels and normalisation from %s", path)
    return read_metadata(path)


def model_info(request: Request, model: Any) -> ModelInfo:
    """The metadata of the converted model: Keras sidecar, then command-line options, then shape."""
    height, width, channels, layout = model_input_shape(model)
    classes = model_classes(model)
    base = keras_sidecar(request.keras)
    if base is not None and (base.input_height, base.input_width) != (height, width):
        raise ConvertError(
            f"{metadata_path(request.keras)} says input {base.input_height}x{base.input_width} "
            f"but the model takes {height}x{width}"
        )
    labels = request.labels or (base.labels if base else FER2013_LABELS)
    if len(labels) != classes:
        raise ConvertError(f"model has {classes} outputs but {len(labels)} labels were given: {list(labels)}")
    color = request.color or (base.color if base else ("gray" if channels == 1 else "rgb"))
    if (color == "gray") != (channels == 1):
        raise ConvertError(f"model input has {channels} channel(s) but the colour is {color!r} "
                           f"({'gray' if channels == 1 else 'rgb or bgr'} expected)")
    values = {"labels": tuple(labels), "input_height": height, "input_width": width, "color": color,
              "layout": layout, "input_quant": None, "output_quant": None,
              "provenance": {"training": base.provenance} if base and base.provenance else {}}
    for key in ("mean", "std", "face_margin"):
        if getattr(request, key) is not None:
            values[key] = getattr(request, key)
    try:
        return dataclasses.replace(base, **values) if base else ModelInfo(**values)
    except ModelError as exc:
        raise ConvertError(str(exc)) from None


def gather_faces(request: Request, info: ModelInfo) -> FaceSplit:
    """Calibration and validation faces, capped and checked against --min-calib."""
    if not request.calib and not request.val:
        return FaceSplit(FaceSet.empty(info), FaceSet.empty(info))
    split = collect_faces(info, list(request.calib), list(request.val) or None,
                          request.holdout, request.augment, request.crops)
    if request.calib and len(split.calibration) < request.min_calib:
        raise ConvertError(
            f"only {len(split.calibration)} calibration faces found in {', '.join(map(str, request.calib))}, "
            f"need at least {request.min_calib} (--min-calib): give more images or videos with faces"
        )
    return FaceSplit(split.calibration.subsample(request.max_calib), split.validation.subsample(request.max_val))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_model(flatbuffer: bytes, path: Path, info: ModelInfo) -> ModelInfo:
    """Write the .tflite and its sidecar with the tensor quantization read back from the model itself."""
    path.write_bytes(flatbuffer)
    interpreter = make_interpreter(path)
    info = dataclasses.replace(
        info,
        input_quant=tensor_quant(interpreter.get_input_details()[0]),
        output_quant=tensor_quant(interpreter.get_output_details()[0]),
    )
    save_model_info(info, path)
    return info


def provenance(request: Request, faces: FaceSplit, info: ModelInfo) -> dict[str, Any]:
    tf = import_tensorflow()
    record = {
        "source_model": request.source_name or request.keras.name,
        "source_sha256": file_sha256(request.keras),
        "quantization": request.quant,
        "calibration_faces": len(faces.calibration),
        "calibration_sources": [s["source"] for s in faces.calibration.summary()],
        "converter": f"convert (tensorflow {tf.__version__})",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if request.quant == "int8":
        record["per_channel"] = request.per_channel
    return {**record, **info.provenance, **request.provenance}


def build(request: Request) -> Result:
    """Convert, write model + sidecar, validate on the faces, write the report; return the report."""
    check_request(request)
    model = load_keras_model(request.keras)
    info = model_info(request, model)
    faces = gather_faces(request, info)
    reference_cal = keras_probabilities(model, faces.calibration.crops, info)
    reference_val = keras_probabilities(model, faces.validation.crops, info)
    probe = reference_cal if len(reference_cal) else reference_val
    if not len(probe):
        probe = keras_probabilities(model, np.full((1, *info.crop_shape), 128, np.uint8), info)
    check_probabilities(probe)
    info = dataclasses.replace(info, provenance=provenance(request, faces, info))
    flatbuffer = convert_model(model, request.quant, faces.calibration.crops, info, request.per_channel)
    info = write_model(flatbuffer, request.out, info)
    log.info("wrote %s (%d bytes) and %s", request.out, len(flatbuffer), metadata_path(request.out))
    with tempfile.TemporaryDirectory() as tmp:
        float_path = request.out
        if request.quant != "none":
            float_path = Path(tmp) / "float.tflite"
            write_model(convert_model(model, "none", None, info), float_path, info)
        report = validation_report(request, info, faces, reference_cal, reference_val, float_path)
    write_report(report, request.report_path)
    return Result(report, info, faces, reference_cal, reference_val)


def validation_report(request: Request, info: ModelInfo, faces: FaceSplit, reference_cal: np.ndarray,
                      reference_val: np.ndarray, float_path: Path) -> dict[str, Any]:
    """Converted and float TFLite models, through the runtime's own Classifier, against Keras float."""
    converted = Classifier(request.out, num_threads=LATENCY_THREADS)
    float_model = Classifier(float_path, num_threads=LATENCY_THREADS)
    held_out = len(faces.validation) > 0
    val_crops, val_reference = (faces.validation.crops, reference_val) if held_out else (
        faces.calibration.crops, reference_cal)
    timing_crops = val_crops if len(val_crops) else np.zeros((1, *info.crop_shape), np.uint8)
    return {
        "model": str(request.out),
        "keras_model": request.source_name or str(request.keras),
        "quantization": request.quant,
        "per_channel": request.quant == "int8" and request.per_channel,
        "input_quant": dataclasses.asdict(info.input_quant),
        "output_quant": dataclasses.asdict(info.output_quant),
        "face_margin": info.face_margin,
        "calibration": {
            "faces": len(faces.calibration),
            "augment": request.augment,
            "sources": faces.calibration.summary(),
            "converted": compare(reference_cal, converted.classify(faces.calibration.crops)),
        },
        "validation": {
            "faces": len(val_crops),
            "held_out": held_out,
            "rule": split_rule(request),
            "sources": (faces.validation if held_out else faces.calibration).summary(),
            "float_tflite": compare(val_reference, float_model.classify(val_crops)),
            "converted": compare(val_reference, converted.classify(val_crops)),
        },
        "size_bytes": {
            "keras": request.keras.stat().st_size,
            "float_tflite": float_path.stat().st_size,
            "converted": request.out.stat().st_size,
        },
        "latency_ms": {
            "threads": LATENCY_THREADS,
            "float_tflite": latency_ms(float_model, timing_crops, request.latency_runs),
            "converted": latency_ms(converted, timing_crops, request.latency_runs),
        },
        "environment": environment(),
    }


def environment() -> dict[str, str]:
    """What the figures were measured with."""
    tf = import_tensorflow()
    return {"python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_name(),
            "cpu_count": str(os.cpu_count()), "tensorflow": tf.__version__,
            "interpreter": interpreter_version()}


def interpreter_version() -> str:
    _, backend = load_interpreter_class()
    try:
        return f"{backend} {importlib.metadata.version(backend)}"
    except importlib.metadata.PackageNotFoundError:
        return backend


def split_rule(request: Request) -> str:
    if request.val:
        return "validation faces come only from the --val sources; no calibration source is used"
    share = f"{request.holdout:.0%}"
    return (f"held out: the last {share} of each video's frames, every {1 / request.holdout:.3g}th image "
            f"of each folder, the non-Training rows of a FER2013 CSV (else every {1 / request.holdout:.3g}th "
            "row); single images calibrate; augmented copies only calibrate"
            if request.holdout > 0 else "nothing held out (--holdout 0)")
