"""fer-edge: facial expression recognition for laptops and Raspberry Pi; the Python API (see README.md).

    import edge
    faces = edge.analyze("photo.jpg")              # list[edge.Face]
    for result in edge.stream("clip.mp4"):         # edge.FrameResult per frame, tracked and smoothed
        print(result.record())

The names below are imported on first use, so that ``import edge.config`` (the CLI, its worker
processes) does not load OpenCV and the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.api import Analyzer, Stream, analyze, stream
    from edge.capture import SourceError
    from edge.config import Config, ConfigError, load_config
    from edge.detect import DetectorError
    from edge.model import ModelError
    from edge.render import OutputError
    from edge.results import Face, Faces, FrameResult

EXPORTS = {
    "analyze": "edge.api", "stream": "edge.api", "Analyzer": "edge.api", "Stream": "edge.api",
    "Face": "edge.results", "Faces": "edge.results", "FrameResult": "edge.results",
    "Config": "edge.config", "load_config": "edge.config",
    "ConfigError": "edge.config", "SourceError": "edge.capture", "ModelError": "edge.model",
    "DetectorError": "edge.detect", "OutputError": "edge.render",
}
__all__ = [*EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from edge.version import version

        value = version()
    elif name in EXPORTS:
        value = getattr(importlib.import_module(EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
