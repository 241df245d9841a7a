"""The Python API: the faces of an image (``analyze``), per-frame results of a video, camera or folder (``stream``).

Everything runs in the caller's process and thread (``edge.runner``'s stages): no worker
processes, so a script needs no ``if __name__ == "__main__":`` guard and a notebook works as is.
Settings are config.toml's tables as keyword arguments, validated like the file::

    edge.stream("clip.mp4", detector={"haar": {"min_face": 0.1}}, smoothing={"half_life_s": 0.3})
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Union

import numpy as np

from edge.capture import STREAM_PREFIXES, Source, SourceError, is_camera_index, open_source
from edge.config import Config, load_config, set_key
from edge.progress import expected_frames
from edge.render import Renderer
from edge.results import Face, FrameResult
from edge.runner import Runner, Stages

ImageInput = Union[np.ndarray, str, os.PathLike]  # a BGR (or gray) uint8 array, or an image file
SourceInput = Union[str, int, os.PathLike]  # a video file, camera index, "picamera", URL, image or folder


def make_config(config: Config | str | os.PathLike | None, tables: dict[str, Any]) -> Config:
    """``config`` (a Config, a TOML file, or None for the defaults) with each keyword's table set over it."""
    settings = config if isinstance(config, Config) else load_config(config)
    for name, table in tables.items():
        settings = set_key(settings, name, table)
    return settings


def checked_image(image: np.ndarray) -> np.ndarray:
    """The array as the detector takes it: uint8, (h, w, 3) BGR or (h, w) gray, contiguous."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) \
            or 0 in image.shape:
        raise SourceError(f"image must be a uint8 BGR array of shape (h, w, 3) or a gray one (h, w), "
                          f"got a {image.dtype} array of shape {image.shape}")
    return np.ascontiguousarray(image)


def read_image(image: ImageInput, config: Config) -> np.ndarray:
    """One image from an array or a file; SourceError with the CLI's messages for a missing or unreadable one."""
    if isinstance(image, np.ndarray):
        return checked_image(image)
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f"image must be a numpy array or a path, got {type(image).__name__}")
    spec = os.fspath(image)
    if is_camera_index(spec) or spec == "picamera" or spec.startswith(STREAM_PREFIXES):
        raise SourceError(f"analyze() takes an image file or array, got {spec!r}: use stream() for cameras and streams")
    source = open_source(spec, config.capture)
    try:
        if not source.still or len(source.paths) != 1:
            raise SourceError(f"analyze() takes one image, got {'a folder' if source.still else 'a video'}: {spec} "
                              "(use stream() for videos and folders)")
        return source.read()
    finally:
        source.close()


class Analyzer:
    """The model and detector loaded once, for many images and streams.

    ``Analyzer(config=None, model=None, **tables)``: ``config`` a ``Config`` or a TOML file,
    ``model`` a shipped model's name or a .tflite path (as ``--model``), and each keyword one of
    config.toml's tables as a dict (``detector={"haar": {"min_neighbors": 5}}``), set over
    ``config`` and validated like the file (``ConfigError`` naming the key). Use it from one
    thread at a time; streams of one Analyzer may be read side by side (each follows its own faces).
    """

    def __init__(self, *, config: Config | str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                 **tables: Any) -> None:
        self.config = make_config(config, tables)
        self.model = model
        self.stages = Stages(self.config, model)

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, in the order of every probability."""
        return self.stages.labels

    def analyze(self, image: ImageInput) -> list[Face]:
        """The faces of one image (a BGR array or an image file), each with its box, label and probabilities."""
        return list(self.stages.faces(read_image(image, self.config), still=True))

    def stream(self, source: SourceInput) -> Stream:
        """Per-frame results of a video file, camera index, URL, "picamera", image or folder of images."""
        return Stream(source, self)


class Stream:
    """One source's results, frame by frame and in order: ``for result in stream: ...``.

    Opened when made (a bad source raises ``SourceError`` at once); closed when its frames end,
    when iteration fails, or by ``close()`` / leaving a ``with`` block. Videos' faces carry track
    ids and smoothed, steady labels, as the CLI shows them; images are independent (not tracked).
    Every frame of a file is read, none dropped; a camera is read as fast as the loop takes frames.
    """

    def __init__(self, source: SourceInput, analyzer: Analyzer) -> None:
        config = analyzer.config
        if isinstance(source, int) and not isinstance(source, bool):
            spec = str(source)
        elif isinstance(source, (str, os.PathLike)):
            spec = os.fspath(source)
        else:
            raise TypeError(f"source must be a path, a camera index or a URL, got {type(source).__name__}"
                            + (" (for an image array use analyze())" if isinstance(source, np.ndarray) else ""))
        self.source: Source = open_source(spec, config.capture)
        self.labels = analyzer.labels
        stages = Stages(config, classifier=analyzer.stages.classifier)  # a detector of its own: it follows faces
        self._frames = iter(Runner(self.source, config, stages=stages))
        self._renderer = Renderer(config.render)
        self._started = False  # the runner closes the source once it has begun reading it
        self._closed = False

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def fps(self) -> float:
        """The source's frame rate (a folder: ``capture.image_fps``)."""
        return self.source.fps

    @property
    def total(self) -> int | None:
        """Frames it will give where known (a file's frame count from its container, a folder's images)."""
        return None if self.source.live else expected_frames(self.source)

    def __iter__(self) -> Iterator[FrameResult]:
        return self

    def __next__(self) -> FrameResult:
        if self._closed:
            raise StopIteration
        self._started = True
        try:
            frame, result = next(self._frames)
        except BaseException:  # the end, or a failure: the source is closed either way
            self.close()
            raise
        result.frame, result.draw = frame, self._draw
        return result

    def _draw(self, frame: np.ndarray, result: FrameResult) -> None:
        self._renderer.render(frame, result, still=self.source.still, realtime=self.source.live)

    def close(self) -> None:
        """Stop reading and release the source (safe to call more than once)."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._frames.close()  # ends the runner's loop, which closes the source
        else:
            self.source.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


def analyze(image: ImageInput, *, config: Config | str | os.PathLike | None = None,
            model: str | os.PathLike | None = None, **tables: Any) -> list[Face]:
    """The faces of one image: ``edge.analyze("photo.jpg")``; settings as for ``Analyzer``.

    Loads the model for this call; for many images make one ``Analyzer`` and call its ``analyze``.
    """
    return Analyzer(config=config, model=model, **tables).analyze(image)


def stream(source: SourceInput, *, config: Config | str | os.PathLike | None = None,
           model: str | os.PathLike | None = None, **tables: Any) -> Stream:
    """Per-frame results of a source: ``for result in edge.stream("clip.mp4"): ...``; settings as for ``Analyzer``."""
    return Analyzer(config=config, model=model, **tables).stream(source)
