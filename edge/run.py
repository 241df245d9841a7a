"""Command line: `python -m edge.run --source ...` runs the pipeline and renders, shows and writes its results."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from edge.capture import Source, SourceError
from edge.config import Config, ConfigError, load_config, override
from edge.detect import DetectorError
from edge.model import ModelError
from edge.pipeline import Pipeline, PipelineError, RunSummary, StartupError
from edge.render import (EventSink, ImageSink, OutputError, Renderer, VideoSink, Window, display_available,
                         make_frame_sink)
from edge.results import FrameResult
from edge.serve import ServeError, WebView
from edge.summary import Timeline, prepare_output, write_summary
from edge.track import TrackedLabels

log = logging.getLogger("edge.run")

EXIT_OK = 0  # end of stream, or the user quit with q / Esc
EXIT_BAD_INPUT = 2  # bad source, model, config or output path
EXIT_FAILED = 3  # a stage failed or a live source was lost while running
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM
USER_ERRORS = (SourceError, ModelError, ConfigError, OutputError, DetectorError, StartupError, ServeError)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edge.run",
        description="Real-time facial expression recognition: every face boxed and labelled.")
    parser.add_argument("--source", default="0",
                        help="camera index, 'picamera', video file, rtsp/http URL, image, or folder of images")
    parser.add_argument("--output", type=Path, help="annotated video (.mp4/.avi/...), or image/folder for images")
    parser.add_argument("--events", type=Path, help="per-frame faces: JSON Lines, or CSV if it ends in .csv")
    parser.add_argument("--summary", type=Path, metavar="DIR",
                        help="per-track emotion summary (JSON, CSV, timeline PNG) into DIR at the end")
    parser.add_argument("--headless", action="store_true", help="no window, even when a display exists")
    parser.add_argument("--config", type=Path, help="TOML config (see config.toml)")
    parser.add_argument("--validate-config", action="store_true", help="check the config file and exit")
    parser.add_argument("--model", help="a shipped model's name (fer2013-mini-xception, face-api-expression) "
                        "or a TFLite model with its .json sidecar (default: fer2013-mini-xception)")
    parser.add_argument("--probabilities", action="store_true", help="draw per-face probability bars")
    parser.add_argument("--live", choices=("auto", "yes", "no"),
                        help="drop stale frames to keep latency low (default: yes for cameras and streams)")
    parser.add_argument("--serve", metavar="HOST:PORT",
                        help="watch in a browser at http://HOST:PORT/ (127.0.0.1 unless another host is given)")
    parser.add_argument("--serve-linger", action="store_true",
                        help="with --serve: after the source ends, keep serving its last frame until Ctrl-C")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.probabilities:
        config = override(config, "render", probabilities=True)
    if args.live:
        config = override(config, "capture", live=args.live)
    return config


class Run(Protocol):
    """What the presenter reads of the run it presents: a Pipeline, or the benchmarks' one-process loop."""

    labels: tuple[str, ...]
    source: Source | None  # open once frames arrive
    source_spec: str | Source  # what --source named

    @property
    def dropped(self) -> int: ...

    @property
    def paced(self) -> bool: ...


class Presenter:
    """The renderer's side of a run: draw each frame, show it, write video, images and events."""

    def __init__(self, pipeline: Run, args: argparse.Namespace, config: Config) -> None:
        self.renderer = Renderer(config.render)
        self.window: Window | None = None
        self.frames: VideoSink | ImageSink | None = None
        self.events: EventSink | None = None
        self.args = args
        self.config = config
        self.pipeline = pipeline
        if args.events:
            self.events = EventSink(args.events, pipeline.labels)
        self.web: WebView | None = None
        if args.serve:
            self.web = WebView(args.serve, config.serve, pipeline.labels, config.render.fps_window_s)
            print(f"web view on {self.web.url}", file=sys.stderr)
        self.tracks = TrackedLabels(config.tracker, config.smoothing, pipeline.labels)
        self.timeline: Timeline | None = None
        if args.summary:
            prepare_output(args.summary)
            self.timeline = Timeline()

    def open(self) -> None:
        """Outputs that need the source (its frame rate, whether it is images)."""
        source = self.pipeline.source
        if self.args.output and self.frames is None:
            single = source.still and len(getattr(source, "paths", [])) == 1
            self.frames = make_frame_sink(self.args.output, source.still, single, source.fps, self.config.render)
        if not self.args.headless and self.window is None:
            if display_available():
                self.window = Window(f"edge: {source.name}")
            else:
                log.info("no display found; running headless")
                self.args.headless = True

    def follow(self, result: FrameResult) -> None:
        """Track the faces of a video frame and smooth their labels (images are independent: not tracked)."""
        if not self.pipeline.source.still:
            result.faces = self.tracks.update(result.faces, result.timestamp)

    def __call__(self, frame: np.ndarray, result: FrameResult, pipeline: Run) -> bool:
        self.open()
        self.follow(result)
        event = result.record()  # built once: the timeline, the web view and the events share it
        if self.timeline is not None:
            self.timeline.add(event)
        self.renderer.render(frame, result, dropped=pipeline.dropped)
        if self.web is not None:
            self.web.publish(frame, result, event, pipeline.source, pipeline.dropped, pipeline.paced)
        if self.frames is not None:
            self.frames.write(frame, result)
        if self.events is not None:
            self.events.write(event)
        if self.window is not None:
            return self.window.show(frame)
        return True

    def linger(self, summary: RunSummary) -> None:
        """The web view says the run ended; with --serve-linger it serves the last frame until Ctrl-C."""
        if self.web is None:
            return
        self.web.finish()
        if self.args.serve_linger and summary.stopped_by == "end" and not summary.error:
            print(f"end of source; still serving {self.web.url} until Ctrl-C", file=sys.stderr)
            summary.stopped_by = self.web.linger()

    def close(self) -> None:
        if self.web is not None:
            self.web.close()
        for sink in (self.frames, self.events):
            if sink is not None:
                sink.close()
        if self.window is not None:
            self.window.close()
        if self.timeline is not None and self.timeline.frame_times:
            try:
                write_summary(self.timeline, self.args.summary, source=str(self.pipeline.source_spec))
            except (OSError, OutputError) as exc:
                log.error("summary not written: %s", exc)


def install_signal_handlers(pipeline: Pipeline) -> None:
    """SIGTERM and a first Ctrl-C stop the run in order; a second Ctrl-C interrupts at once."""

    def on_sigint(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pipeline.request_stop("interrupt")

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, lambda signum, frame: pipeline.request_stop("terminate"))


def exit_code(summary: RunSummary) -> int:
    if summary.error:
        return EXIT_FAILED
    return {"interrupt": EXIT_INTERRUPTED, "terminate": EXIT_TERMINATED}.get(summary.stopped_by, EXIT_OK)


def report(summary: RunSummary, args: argparse.Namespace) -> str:
    written = ", ".join(str(p) for p in (args.output, args.events, args.summary) if p)
    first = f", first frame after {summary.first_frame_s:.2f} s" if summary.first_frame_s is not None else ""
    return (f"{summary.frames_done} frames in {summary.elapsed_s:.2f} s ({summary.fps:.1f} frames/s){first}; "
            f"faces in {summary.frames_with_faces} frames, {summary.dropped} dropped"
            + (f"; wrote {written}" if written else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
        if args.validate_config:
            print(f"{args.config or 'defaults'}: config OK")
            return EXIT_OK
        pipeline = Pipeline(args.source, config, model=args.model, pace=bool(args.serve) and config.serve.pace)
        presenter = Presenter(pipeline, args, config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    install_signal_handlers(pipeline)
    try:
        summary = pipeline.run(presenter)
        presenter.linger(summary)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        presenter.close()
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)
    print(report(summary, args), file=sys.stderr)
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
