"""TensorFlow.js weights: a weights manifest and its .bin shards -> named float32 NumPy arrays (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convert import ConvertError

DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def read_manifest(path: Path) -> list[dict]:
    """The manifest's weight groups: [{"paths": [...], "weights": [{"name", "shape", "dtype", "quantization"?}]}]."""
    try:
        groups = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConvertError(f"not a TensorFlow.js weights manifest: {path} ({exc})") from None
    if isinstance(groups, dict):  # a model.json: the manifest sits under weightsManifest
        groups = groups.get("weightsManifest", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "paths" in g and "weights" in g for g in groups):
        raise ConvertError(f"not a TensorFlow.js weights manifest: {path} (expected groups of paths and weights)")
    return groups


def decode(spec: dict, data: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """One weight from the group's bytes at ``offset``: dequantized (value = q * scale + min) when quantized."""
    count = int(np.prod(spec["shape"], dtype=np.int64))
    quantization = spec.get("quantization")
    stored = quantization["dtype"] if quantization else spec["dtype"]
    if stored not in DTYPES:
        raise ConvertError(f"weight {spec['name']}: unsupported dtype {stored!r}")
    dtype = np.dtype(DTYPES[stored])
    end = offset + count * dtype.itemsize
    if end > len(data):
        raise ConvertError(f"weight {spec['name']}: the .bin data ends at byte {len(data)}, the weight at {end}")
    values = np.frombuffer(data, dtype, count, offset)
    if quantization:
        if "scale" not in quantization:  # float16 storage: no affine parameters
            values = values.astype(np.float32)
        else:
            values = values.astype(np.float32) * np.float32(quantization["scale"]) + np.float32(quantization["min"])
    return values.astype(np.float32).reshape(spec["shape"]), end


def read_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Every weight of a TensorFlow.js model by name, from the manifest and the shards beside it."""
    weights: dict[str, np.ndarray] = {}
    for group in read_manifest(manifest):
        shards = [manifest.parent / name for name in group["paths"]]
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise ConvertError(f"{manifest}: weight file(s) not found: {', '.join(missing)}")
        data = memoryview(b"".join(p.read_bytes() for p in shards))
        offset = 0
        for spec in group["weights"]:
            weights[spec["name"]], offset = decode(spec, data, offset)
        if offset != len(data):
            raise ConvertError(f"{manifest}: {len(data) - offset} bytes of {', '.join(group['paths'])} are not "
                               "described by the manifest")
    return weights
