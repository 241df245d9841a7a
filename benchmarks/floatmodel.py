"""The float reference model: a Keras model converted with `python -m convert --quant none`, cached by content.

The conversion runs in a subprocess, so the benchmark process never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.model import load_model_info

REPO_ROOT = Path(__file__).resolve().parent.parent
CONVERT_TIMEOUT_S = 600.0


def convert_command(keras_path: Path, out_path: Path, like: Path) -> list[str]:
    """Float32 conversion with the labels, normalisation and face margin of the model it is compared with."""
    info = load_model_info(like)
    return [sys.executable, "-m", "convert", "--keras", str(keras_path), "--out", str(out_path), "--quant", "none",
            "--labels", ",".join(info.labels), "--color", info.color, "--mean", ",".join(map(repr, info.mean)),
            "--std", ",".join(map(repr, info.std)), "--face-margin", repr(info.face_margin)]


def cached_float_model(keras_path: Path, like: Path, cache_dir: Path | None = None) -> Path:
    """The float TFLite of a Keras model, converted once and kept in a cache keyed by the inputs' content."""
    if not keras_path.is_file():
        raise FileNotFoundError(f"Keras model not found: {keras_path}")
    digest = hashlib.sha256(keras_path.read_bytes() + like.with_suffix(".json").read_bytes()).hexdigest()[:16]
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "fer-edge-bench"
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_path = cache_dir / f"{keras_path.stem}_float32_{digest}.tflite"
    if out_path.is_file() and out_path.with_suffix(".json").is_file():
        return out_path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(convert_command(keras_path, out_path, like), cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=CONVERT_TIMEOUT_S)
    if done.returncode != 0 or not out_path.is_file():
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"float conversion of {keras_path} failed (it needs TensorFlow: "
                           f"pip install 'fer-edge[convert]'): {tail[0]}")
    return out_path
