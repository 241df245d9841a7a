"""Command line: `python -m edge.run --source ...` runs the pipeline and renders, shows and writes its results."""

from __future__ import annotations

import sys

if __name__ == "__main__":  # first of all: a stop signal while the modules below import (up to a second or two)
    from edge.signals import stop_signals  # ends the program at once with its exit code, and no traceback

    stop_signals.install(exit_at_once=True)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, Protocol, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from edge.capture import Source, SourceError, is_camera_index  # noqa: E402
from edge.config import Config, ConfigError, load_config, override, parse_setting, set_key  # noqa: E402
from edge.model import ModelError, metadata_path  # noqa: E402
from edge.native import quiet_native_logs  # noqa: E402
from edge.overwrite import check_outputs, source_files  # noqa: E402
from edge.pipeline import Pipeline, PipelineError, RunStats, StartupError  # noqa: E402
from edge.progress import Progress  # noqa: E402
from edge.render import OutputError, Renderer, WriteError  # noqa: E402
from edge.results import FrameResult  # noqa: E402
from edge.serve import ServeError, WebView  # noqa: E402
from edge.sinks import Outputs, add_options, make_sinks, named_paths, outputs_of, written_files  # noqa: E402
from edge.signals import StopReason, stop_signals, stopped_early  # noqa: E402
from edge.summary import no_plot_note, plot_available, summary_table  # noqa: E402
from edge.track import TrackedLabels  # noqa: E402

log = logging.getLogger("edge.run")

EXIT_OK = 0  # end of stream, or the user quit with q / Esc
EXIT_BAD_INPUT = 2  # bad source, model, config or output path
EXIT_FAILED = 3  # a stage failed or stalled, a live source was lost, or an output could not be written
# A run stopped by a signal exits with its StopReason's code: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP).
# The detector is built in its own process: its errors come back as a StartupError or a PipelineError.
USER_ERRORS = (SourceError, ModelError, ConfigError, OutputError, StartupError, ServeError)


def parse_args(argv: Sequence[str] | None, prog: str = "python -m edge.run") -> argparse.Namespace:
    from edge import __version__

    parser = argparse.ArgumentParser(
        prog=prog, description="Real-time facial expression recognition: every face boxed and labelled.")
    parser.add_argument("--source", default="0",
                        help="camera index, 'picamera', video file, rtsp/http URL, image, or folder of images")
    parser.add_argument("--config", type=Path, help="TOML config (see config.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="settings",
                        help="set one config key over --config, e.g. detector.haar.min_neighbors=5 "
                        "(a TOML value; a bare word is a string); repeatable")
    parser.add_argument("--validate-config", action="store_true", help="check the config (and --set) and exit")
    parser.add_argument("--model", help="a shipped model's name (fer2013-mini-xception, face-api-expression) "
                        "or a TFLite model with its .json sidecar (default: fer2013-mini-xception)")
    parser.add_argument("--detector", metavar="KIND",
                        help="face detector: haar (default) or blazeface (sets detector.kind)")
    parser.add_argument("--probabilities", action="store_true", help="draw per-face probability bars")
    parser.add_argument("--live", choices=("auto", "yes", "no"),
                        help="drop stale frames to keep latency low (default: yes for cameras and streams)")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--version", action="version", version=f"fer-edge {__version__}")
    add_options(parser)  # every sink's: --output, --events, --summary, --serve, ... (edge.sinks.SINKS)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    for setting in args.settings:
        config = set_key(config, *parse_setting(setting))
    if args.probabilities:
        config = override(config, "render", probabilities=True)
    if args.live:
        config = override(config, "capture", live=args.live)
    if args.detector:
        config = override(config, "detector", kind=args.detector)
    return config


class Run(Protocol):
    """What the presenter reads of the run it presents: a Pipeline, or the library's one-process Runner."""

    labels: tuple[str, ...]
    source: Source | None  # open once frames arrive
    source_spec: str | Source  # what --source named

    @property
    def paced(self) -> bool: ...


class Presenter:
    """The renderer's side of a run: each frame's faces tracked and smoothed (videos), drawn, handed to every sink."""

    def __init__(self, run: Run, outputs: Outputs, config: Config) -> None:
        self.run = run
        self.outputs = outputs
        self.renderer = Renderer(config.render)
        self.tracked = TrackedLabels(config.tracker, config.smoothing, run.labels)
        self.created = [path for path in named_paths(outputs) if not path.exists()]
        self.sinks = make_sinks(outputs, config, run.labels, str(run.source_spec), show_summary, say)
        self.opened = False

    def __call__(self, frame: np.ndarray, result: FrameResult, run: Run) -> bool:
        """One frame, in order; False when a sink asks the run to stop (the window closed)."""
        source = run.source
        if not self.opened:
            self.opened = True
            for sink in self.sinks:
                sink.open(source, run.paced)
        if not source.still:  # images are independent: not tracked
            result.faces = self.tracked.update(result.faces, result.timestamp)
        self.renderer.render(frame, result, dropped=result.dropped, still=source.still,
                             realtime=source.live or run.paced)
        keep_going = True
        with naming_write_errors():
            for sink in self.sinks:
                keep_going = sink.write(frame, result) is not False and keep_going
        return keep_going

    def linger(self, stats: RunStats) -> None:
        """The web view says the run ended; with --serve-linger it serves the last frame until a stop signal."""
        web = next((sink for sink in self.sinks if isinstance(sink, WebView)), None)
        if web is None:
            return
        for sink in self.sinks:  # the progress bar goes before the lines below
            if isinstance(sink, Progress):
                sink.close()
        if not (self.outputs.linger and stats.stopped_by is StopReason.END and not stats.error):
            web.finish()
            return
        stop, reasons = threading.Event(), []
        stop_signals.listen(lambda reason: (reasons.append(reason), stop.set()))  # before clients see the end
        web.finish()
        say(f"end of source; still serving {web.url} until Ctrl-C")
        web.linger(stop)
        stats.stopped_by = reasons[0]

    def close(self) -> str | None:
        """Close every sink in order, whatever fails; the first output that could not be completed, as one line."""
        errors: list[str] = []
        for sink in self.sinks:
            try:
                with naming_write_errors():
                    sink.close()
            except (WriteError, OutputError) as exc:
                errors.append(str(exc))
        return errors[0] if errors else None

    def discard_unstarted(self) -> None:
        """The run failed before its first frame (a detector or model the workers could not load): the
        output files it created are empty, so they go; a file that was there before is left as it is."""
        if self.opened:
            return
        for path in self.created:
            if path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()


def show_summary(summary: dict) -> None:
    """--summary's table on stdout, once its files are written."""
    with contextlib.suppress(OSError, ValueError):  # stdout may be gone (a closed terminal)
        print(summary_table(summary), flush=True)
    if not plot_available():
        say(no_plot_note())


@contextlib.contextmanager
def naming_write_errors() -> Iterator[None]:
    """An output's OSError (a full disk, an I/O error) as a WriteError: one line naming the file."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        named = reason if exc.filename is None or str(exc.filename) in reason else f"cannot write {exc.filename}: {reason}"
        raise WriteError(named) from None


def say(line: str) -> None:
    """One line on stderr; nothing when stderr is gone (a closed terminal or ssh session, a closed pipe)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def exit_code(stats: RunStats) -> int:
    if stats.error:
        return EXIT_FAILED
    return stats.stopped_by.exit_code


def input_files(args: argparse.Namespace, pipeline: Pipeline) -> dict[str, list[Path]]:
    """Every file the run reads, by what it is: no output may be one of them."""
    inputs = {"source": [] if is_camera_index(args.source) else source_files(args.source),
              "model": [pipeline.model_path, metadata_path(pipeline.model_path)]}
    if args.config:
        inputs["config"] = [args.config]
    return inputs


def result_line(stats: RunStats, outputs: Outputs) -> str:
    """The line a finished run ends with: frames, rate, faces, drops, and what it wrote."""
    written = ", ".join(str(path) for path in named_paths(outputs))
    first = f", first frame after {stats.first_frame_s:.2f} s" if stats.first_frame_s is not None else ""
    return (f"{stats.frames_done} frames in {stats.elapsed_s:.2f} s ({stats.fps:.1f} frames/s){first}; "
            f"faces in {stats.frames_with_faces} frames, {stats.dropped} dropped"
            + (f"; wrote {written}" if written else ""))


def main(argv: Sequence[str] | None = None, prog: str = "python -m edge.run") -> int:
    """The CLI; its exit code. Stderr gets one line: the error, or the report (besides warnings and --serve's URL)."""
    stop_signals.install()  # (already done when run as `python -m edge.run`)
    stop_signals.listen(None)
    args = parse_args(argv, prog)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    quiet_native_logs(debug=args.log_level == "DEBUG")
    try:
        config = build_config(args)
        if args.validate_config:
            print(f"{args.config or 'defaults'}: config OK")
            return EXIT_OK
        pipeline = Pipeline(args.source, config, model=args.model, pace=bool(args.serve) and config.serve.pace)
        outputs = outputs_of(args)
        source = [] if is_camera_index(args.source) else source_files(args.source)
        check_outputs(written_files(outputs, source), input_files(args, pipeline))  # before any output is opened
        if stop_signals.reason:
            say(stopped_early(stop_signals.reason))
            return stop_signals.exit_code
        presenter = Presenter(pipeline, outputs, config)
    except USER_ERRORS as exc:
        say(f"error: {exc}")
        return EXIT_BAD_INPUT
    stop_signals.listen(pipeline.request_stop)
    try:
        return run_to_end(pipeline, presenter)
    finally:
        stop_signals.listen(None)


def run_to_end(pipeline: Pipeline, presenter: Presenter) -> int:
    """Run the pipeline, then close every output in order, whatever happened; the exit code."""
    failure: tuple[int, str] | None = None
    stats = pipeline.stats
    try:
        stats = pipeline.run(presenter)
        presenter.linger(stats)
    except USER_ERRORS as exc:
        failure = EXIT_BAD_INPUT, str(exc)
    except (PipelineError, WriteError) as exc:
        failure = EXIT_FAILED, str(exc)
    finally:
        unwritten = presenter.close()
    if failure is not None:
        presenter.discard_unstarted()
    if failure is None and unwritten:
        failure = EXIT_FAILED, unwritten
    if failure is None and stats.error:
        failure = EXIT_FAILED, stats.error
    if failure is not None:
        say(f"error: {failure[1]}")
        return failure[0]
    say(result_line(stats, presenter.outputs))
    return exit_code(stats)


def leave(code: int) -> None:
    """Exit with ``code``. A thread left in native code (an open or a read that never returned) would abort
    Python's shutdown when it came back ("terminate called without an active exception"), so then the
    process ends without it, everything written and closed already."""
    if any(thread.is_alive() for thread in threading.enumerate() if thread is not threading.main_thread()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main())
