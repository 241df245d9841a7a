"""Classifier stage: face crops -> expression probabilities with a (quantized) TFLite model."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge.model import ModelError, ModelInfo, TensorQuant, load_model_info
from edge.models import DEFAULT_MODEL, resolve_model
from edge.native import held_stderr

log = logging.getLogger(__name__)


def load_interpreter_class() -> tuple[type, str]:
    """The first TFLite interpreter available: LiteRT, then tflite-runtime, then TensorFlow."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore[import-not-found]

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise ModelError(
            "no TFLite interpreter installed: pip install ai-edge-litert "
            "(or tflite-runtime, or tensorflow)"
        ) from None


@contextlib.contextmanager
def native_stderr_to_log() -> Any:
    """Route what native code writes to stderr (LiteRT's 'Created XNNPACK delegate' line) to the log."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to route
        yield
        return
    held: list[str] = []
    try:
        with held_stderr(stderr_fd) as held:
            yield
    finally:
        for line in held:
            log.debug("interpreter: %s", line)


def make_interpreter(model_path: str | Path, num_threads: int = 1) -> Any:
    interpreter_class, backend = load_interpreter_class()
    try:
        with native_stderr_to_log():
            interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model {model_path} is not a loadable TFLite model ({first_line})") from None
    log.debug("loaded %s with %s, %d thread(s)", model_path, backend, num_threads)
    return interpreter


def tensor_quant(detail: dict[str, Any]) -> TensorQuant:
    """The interpreter's own view of a tensor's dtype and quantization."""
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorQuant(dtype=dtype, scale=float(scale), zero_point=int(zero_point))


def check_model_matches(info: ModelInfo, input_detail: dict, output_detail: dict, path: Path) -> None:
    """Refuse a model whose metadata and tensors disagree: using it would give silent garbage."""
    shape = tuple(int(d) for d in input_detail["shape"])
    expected = info.tensor_shape()
    if len(shape) != 4 or shape[1:] != expected[1:]:
        raise ModelError(
            f"model {path.name}: metadata says {info.color} input {info.input_height}x{info.input_width}"
            f"x{info.channels} {info.layout} (tensor [N, {', '.join(map(str, expected[1:]))}]) "
            f"but the input tensor is {list(shape)}"
        )
    n_outputs = int(output_detail["shape"][-1])
    if n_outputs != len(info.labels):
        raise ModelError(
            f"model {path.name}: metadata lists {len(info.labels)} labels "
            f"but the output tensor has {n_outputs} classes"
        )
    for name, recorded, actual in (
        ("input", info.input_quant, tensor_quant(input_detail)),
        ("output", info.output_quant, tensor_quant(output_detail)),
    ):
        if recorded is None:
            continue
        same_scale = np.isclose(recorded.scale, actual.scale, rtol=1e-5, atol=0.0)
        if recorded.dtype != actual.dtype or not same_scale or recorded.zero_point != actual.zero_point:
            raise ModelError(
                f"model {path.name}: metadata says {name} {recorded} but the tensor is {actual}"
            )


def input_lookup_table(info: ModelInfo, quant: TensorQuant) -> np.ndarray:
    """(channels, 256): every uint8 pixel value of each channel mapped straight to the model's input value.

    Normalising and quantizing a pixel depends only on its value and channel, so one table lookup
    per pixel replaces the float arithmetic and is exact. Gray models have one row.
    """
    pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, np.newaxis], info.channels, axis=1)  # (256, c)
    normalized = info.normalize(pixels if info.channels > 1 else pixels[:, 0]).reshape(256, info.channels).T
    if not quant.quantized:
        return np.ascontiguousarray(normalized.astype(quant.dtype))
    limits = np.iinfo(quant.dtype)
    quantized = np.round(normalized / quant.scale) + quant.zero_point
    return np.ascontiguousarray(np.clip(quantized, limits.min, limits.max).astype(quant.dtype))


def lookup(table: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """uint8 crops (n, h, w) or (n, h, w, c) through the per-channel table (c, 256)."""
    if table.shape[0] == 1:
        return table[0][crops]
    out = np.empty(crops.shape, table.dtype)
    for channel, row in enumerate(table):
        out[..., channel] = row[crops[..., channel]]
    return out


class Classifier:
    """Runs one model on face crops; probabilities in label order.

    ``flip``: each face is classified together with its mirror image and the two outputs are
    averaged (test-time augmentation; twice the inference per face). ``batch``: all faces of a
    call go through one invoke (the input tensor resized to their number) where the model's batch
    dimension allows it; measured no faster than one invoke per face with XNNPACK on one thread
    (see BENCHMARKS.md), so off by default.
    """

    def __init__(self, model_path: str | Path | None = DEFAULT_MODEL, num_threads: int = 1, flip: bool = False,
                 batch: bool = False) -> None:
        self.path = resolve_model(model_path)
        self.info = load_model_info(self.path)
        self.flip = flip
        self.interpreter = make_interpreter(self.path, num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"model {self.path.name}: expected 1 input and 1 output tensor, "
                f"got {len(inputs)} and {len(outputs)}"
            )
        check_model_matches(self.info, inputs[0], outputs[0], self.path)
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]
        self._output_quant = tensor_quant(outputs[0])
        self._lut = input_lookup_table(self.info, tensor_quant(inputs[0]))
        self.input_dtype = np.dtype(inputs[0]["dtype"])  # int8/uint8: a quantized model's input; float32: float I/O
        signature = inputs[0].get("shape_signature", inputs[0]["shape"])
        self.batch = batch and int(signature[0]) == -1
        self._batch_size = 1  # faces the input tensor is allocated for

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """(n, *info.crop_shape) uint8 face crops -> (n, classes) float32 probabilities."""
        if crops.ndim != len(self.info.crop_shape) + 1 or crops.shape[1:] != self.info.crop_shape:
            raise ValueError(
                f"expected crops of shape (n, {', '.join(map(str, self.info.crop_shape))}), got {crops.shape}"
            )
        n = len(crops)
        if self.flip:
            crops = np.concatenate([crops, crops[:, :, ::-1]])
        inputs = self.info.to_tensor(lookup(self._lut, crops))
        probs = self._invoke_batch(inputs) if self.batch and len(inputs) > 1 else self._invoke_each(inputs)
        return (probs[:n] + probs[n:]) / 2 if self.flip else probs

    def _invoke_each(self, inputs: np.ndarray) -> np.ndarray:
        self._allocate(1)
        probs = np.empty((len(inputs), len(self.labels)), dtype=np.float32)
        for i in range(len(inputs)):
            self.interpreter.set_tensor(self._input_index, inputs[i : i + 1])
            self.interpreter.invoke()
            probs[i] = self._dequantize(self.interpreter.get_tensor(self._output_index)[0])
        return probs

    def _invoke_batch(self, inputs: np.ndarray) -> np.ndarray:
        self._allocate(len(inputs))
        self.interpreter.set_tensor(self._input_index, inputs)
        self.interpreter.invoke()
        return self._dequantize(self.interpreter.get_tensor(self._output_index))

    def _allocate(self, faces: int) -> None:
        """Resize the input tensor to ``faces`` (a no-op when it already has that size)."""
        if faces != self._batch_size:
            self.interpreter.resize_tensor_input(self._input_index, list(self.info.tensor_shape(faces)))
            self.interpreter.allocate_tensors()
            self._batch_size = faces

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        if not self._output_quant.quantized:
            return raw.astype(np.float32)
        q = self._output_quant
        return (raw.astype(np.float32) - q.zero_point) * q.scale
