"""Keras model in, TFLite flatbuffer out: loading, checking and quantizing with TensorFlow."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from convert import ConvertError
from edge.model import ModelInfo

log = logging.getLogger(__name__)

QUANT_MODES = ("int8", "float16", "dynamic", "none")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
INSTALL_HINT = "pip install '.[convert]'  (or: pip install tensorflow-cpu h5py)"
PROBABILITY_TOLERANCE = 1e-3  # how far a softmax row may sum from 1


def import_tensorflow() -> Any:
    """TensorFlow, quietly, or a one-line error with the install command (it is an extra)."""
    if "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_output() as captured:
        try:
            import tensorflow as tf
        except ImportError:
            tf = None
    log.debug("importing tensorflow:\n%s", captured.getvalue())
    if tf is None:
        raise ConvertError(f"conversion needs TensorFlow, which is not installed: {INSTALL_HINT}")
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def check_keras_file(path: Path) -> None:
    """Fail before importing TensorFlow when the file cannot be a Keras model."""
    if not path.is_file():
        raise ConvertError(f"Keras model not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        raise ConvertError(f"not a Keras model: {path} (expected one of {', '.join(KERAS_SUFFIXES)})")
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ConvertError(f"not a Keras model: {path} is not a .keras zip archive")
    if suffix != ".keras" and not is_hdf5(path):
        raise ConvertError(f"not a Keras model: {path} is not an HDF5 file")


def is_hdf5(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(8)
    return head == b"\x89HDF\r\n\x1a\n"


def load_keras_model(path: Path) -> Any:
    """A Keras model for inference (compile=False: optimizer state and custom losses are not needed)."""
    check_keras_file(path)
    tf = import_tensorflow()
    try:
        return tf.keras.models.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError, KeyError, AttributeError) as exc:
        raise ConvertError(f"not a loadable Keras model: {path} ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def model_input_shape(model: Any) -> tuple[int, int, int, str]:
    """(height, width, channels, layout) of a single image input, or a one-line error.

    Keras models are channels-last (NHWC); a (batch, 1 or 3, h, w) input with more than 3 rows
    and columns is read as channels-first (NCHW), as models exported from PyTorch are.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConvertError(
            f"model must have 1 input and 1 output, got {len(model.inputs)} and {len(model.outputs)}"
        )
    shape = tuple(model.inputs[0].shape)
    known = len(shape) == 4 and None not in shape[1:]
    if known and shape[3] in (1, 3):
        return int(shape[1]), int(shape[2]), int(shape[3]), "NHWC"
    if known and shape[1] in (1, 3) and min(shape[2:]) > 3:
        return int(shape[2]), int(shape[3]), int(shape[1]), "NCHW"
    raise ConvertError(
        f"model input must be (batch, height, width, 1 or 3) images, got {shape_text(shape)}"
    )


def model_classes(model: Any) -> int:
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[1] is None:
        raise ConvertError(f"model output must be (batch, classes) probabilities, got {shape_text(shape)}")
    return int(shape[1])


def shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def keras_probabilities(model: Any, crops: np.ndarray, info: ModelInfo) -> np.ndarray:
    """(n, classes) float32 outputs of the float Keras model on uint8 face crops."""
    if not len(crops):
        return np.zeros((0, len(info.labels)), np.float32)
    return np.asarray(model.predict(info.network_input(crops), batch_size=64, verbose=0), dtype=np.float32)


def check_probabilities(probs: np.ndarray) -> None:
    """The runtime shows outputs as probabilities: refuse a model that ends in logits."""
    sums = probs.sum(axis=1)
    if len(probs) and (probs.min() < -PROBABILITY_TOLERANCE or np.abs(sums - 1).max() > PROBABILITY_TOLERANCE):
        raise ConvertError(
            f"model outputs are not probabilities (rows sum to {sums.min():.3g}..{sums.max():.3g}); "
            "end the model with a softmax"
        )


def representative_inputs(crops: np.ndarray, info: ModelInfo) -> Iterator[list[np.ndarray]]:
    """Calibration samples for the converter, one normalised face per step.

    The first sample gets one black and one white pixel (every channel) so that the int8 input
    range covers every pixel value: the runtime's lookup table then maps 0..255 without clipping.
    """
    for i, crop in enumerate(crops):
        if i == 0:
            crop = crop.copy()
            crop[0, 0], crop[-1, -1] = 0, 255
        yield [info.network_input(crop[np.newaxis])]


def make_converter(model: Any, quant: str, calibration: np.ndarray | None, info: ModelInfo,
                   per_channel: bool = True) -> Any:
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "none":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "int8":
        if calibration is None or not len(calibration):
            raise ConvertError("int8 quantization needs calibration faces (--calib)")
        converter.representative_dataset = lambda: representative_inputs(calibration, info)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter._experimental_disable_per_channel = not per_channel
    return converter


def convert_model(model: Any, quant: str, calibration: np.ndarray | None, info: ModelInfo,
                  per_channel: bool = True) -> bytes:
    """The TFLite flatbuffer of a Keras model in one quantization mode."""
    if quant not in QUANT_MODES:
        raise ConvertError(f"--quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}")
    converter = make_converter(model, quant, calibration, info, per_channel)
    with quiet_native_output() as captured:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises many types; report one line
            log.debug("converter output:\n%s", captured.getvalue())
            hint = " (try --quant dynamic)" if quant == "int8" else ""
            raise ConvertError(f"TFLite conversion ({quant}) failed: {first_line(exc)}{hint}") from None
    log.debug("converter output:\n%s", captured.getvalue())
    return flatbuffer


@contextlib.contextmanager
def quiet_native_output() -> Iterator[io.StringIO]:
    """Capture the converter's chatter (Python prints, warnings and native stdout/stderr)."""
    captured = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.write(sink.read().decode(errors="replace"))
