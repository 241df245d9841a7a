"""The float reference model: a Keras .h5/.keras converted to TFLite with no quantization, in a TensorFlow subprocess.

Usage: ``python -m benchmarks.floatmodel KERAS_MODEL OUT.tflite LIKE.tflite`` (LIKE's sidecar gives the
labels, input size, normalisation and face margin; the float model's tensors carry no quantization).
The benchmark process itself never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.model import load_model_info, save_model_info

REPO_ROOT = Path(__file__).resolve().parent.parent
CONVERT_TIMEOUT_S = 600.0


def convert_float(keras_path: Path, out_path: Path, like: Path) -> None:
    """Convert without any optimization (float32 weights and activations) and write the sidecar."""
    import keras  # type: ignore[import-not-found]
    import tensorflow as tf  # type: ignore[import-not-found]

    model = keras.models.load_model(str(keras_path), compile=False)
    out_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    info = dataclasses.replace(load_model_info(like), input_quant=None, output_quant=None,
                               provenance={"source": str(keras_path), "quantization": "none",
                                           "converted_by": "benchmarks.floatmodel"})
    save_model_info(info, out_path)


def cached_float_model(keras_path: Path, like: Path, cache_dir: Path | None = None) -> Path:
    """The float TFLite of a Keras model, converted once and kept in a cache keyed by the file's content."""
    digest = hashlib.sha256(keras_path.read_bytes() + like.with_suffix(".json").read_bytes()).hexdigest()[:16]
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "fer-edge-bench"
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_path = cache_dir / f"{keras_path.stem}_float_{digest}.tflite"
    if out_path.is_file() and out_path.with_suffix(".json").is_file():
        return out_path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.floatmodel", str(keras_path), str(out_path), str(like)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    if done.returncode != 0 or not out_path.is_file():
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"float conversion of {keras_path} failed (needs TensorFlow: pip install "
                           f"'fer-edge[convert]'): {tail[0]}")
    return out_path


if __name__ == "__main__":
    convert_float(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
