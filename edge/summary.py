"""Video summary: per-track emotion timelines, time shares, dominant emotion and label-change rates from events."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edge.capture import Source
from edge.outputs import Context, Option, Outputs
from edge.render import OutputError
from edge.results import UNCERTAIN, FrameResult

log = logging.getLogger(__name__)

PLOT_HINT = "pip install '.[plot]'"  # the extra that brings matplotlib (the JSON, CSV and table need nothing)
SUMMARY_FILES = ("summary.json", "summary.csv", "timeline.png")  # what write_summary writes into its folder
MAX_PLOTTED_TRACKS = 12  # the longest tracks get a timeline panel; every track is in the JSON and CSV
GAP_FRAMES = 1.5  # a track's samples further apart than this many frame intervals are drawn as a gap
EMOTION_COLORS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#2ca02c",
                  "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#7f7f7f", "contempt": "#e377c2",
                  UNCERTAIN: "#c7c7c7"}


class SummaryError(ValueError):
    """An events file cannot be read."""


@dataclass
class TrackLog:
    """One track's samples: time, shown label and raw per-frame label."""

    t: list[float] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)


class Timeline:
    """Per-track labels over time, fed frame events in order: live from a run, or read back from a file."""

    def __init__(self) -> None:
        self.labels: list[str] = []  # emotions in model order, from the first face's probabilities
        self.frame_times: list[float] = []
        self.tracks: dict[int, TrackLog] = {}

    def add(self, record: dict[str, Any]) -> None:
        """One frame's event (the JSON Lines object): its time and every face's track and labels."""
        t = float(record["t"])
        self.frame_times.append(t)
        for face in record["faces"]:
            if not self.labels and face.get("probs"):
                self.labels = list(face["probs"])
            track = self.tracks.setdefault(int(face.get("track_id", -1)), TrackLog())
            track.t.append(t)
            track.label.append(face["label"])
            track.raw.append(face.get("raw_label", face["label"]))

    @property
    def categories(self) -> list[str]:
        """Every label a summary reports on: the model's, any other seen, and ``UNCERTAIN``."""
        seen = {name for track in self.tracks.values() for name in (*track.label, *track.raw)}
        return [*self.labels, *sorted(seen - set(self.labels) - {UNCERTAIN}), UNCERTAIN]

    @property
    def frame_interval_s(self) -> float:
        """Median time between processed frames (0 for a single frame)."""
        times = np.unique(np.asarray(self.frame_times, np.float64))
        return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def read_events(path: Path) -> Timeline:
    """A timeline from an events file written by ``--events``: JSON Lines, or CSV if it ends in .csv."""
    if not path.is_file():
        raise SummaryError(f"events file not found: {path}")
    timeline = Timeline()
    records = csv_records(path) if path.suffix.lower() == ".csv" else jsonl_records(path)
    for record in records:
        timeline.add(record)
    if not timeline.frame_times:
        raise SummaryError(f"no frames in events file {path}")
    return timeline


def jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise SummaryError(f"{path} line {number} is not JSON") from None
            if not isinstance(record, dict) or "t" not in record or "faces" not in record:
                raise SummaryError(f"{path} line {number} is not a frame event (needs 't' and 'faces')")
            yield record


def csv_records(path: Path) -> Iterator[dict[str, Any]]:
    """Frame events rebuilt from the CSV's one row per face (a frame with no face has an empty label)."""
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = {"frame", "t", "track_id", "label"} - set(reader.fieldnames or ())
        if missing:
            raise SummaryError(f"{path} is not an events CSV (no column {', '.join(sorted(missing))})")
        record: dict[str, Any] | None = None
        for row in reader:
            key = (row["frame"], row.get("image", ""))
            if record is None or record["key"] != key:
                if record is not None:
                    yield record
                record = {"key": key, "t": float(row["t"]), "faces": []}
            if row["label"]:
                record["faces"].append({"track_id": int(row["track_id"]), "label": row["label"],
                                        "raw_label": row.get("raw_label") or row["label"]})
        if record is not None:
            yield record


def label_changes(labels: Sequence[str]) -> int:
    """How often consecutive samples differ."""
    return sum(a != b for a, b in zip(labels, labels[1:]))


def track_summary(track_id: int, track: TrackLog, interval_s: float, categories: list[str]) -> dict[str, Any]:
    """Share of time per label, dominant emotion and label-change rates (raw and shown) of one track."""
    frames = len(track.t)
    span_s = track.t[-1] - track.t[0] + interval_s
    counts = {name: track.label.count(name) for name in categories}
    emotions = {name: n for name, n in counts.items() if name != UNCERTAIN and n}
    changes = {"raw": label_changes(track.raw), "shown": label_changes(track.label)}
    return {
        "track_id": track_id,
        "first_t": round(track.t[0], 4),
        "last_t": round(track.t[-1], 4),
        "frames": frames,
        "seconds": round(frames * interval_s, 4),
        "dominant": max(emotions, key=emotions.get) if emotions else UNCERTAIN,
        "share": {name: round(n / frames, 4) for name, n in counts.items()},
        "label_changes": changes,
        "changes_per_s": {k: round(v / span_s, 4) if span_s > 0 else 0.0 for k, v in changes.items()},
        "span_s": round(span_s, 4),
    }


def summarize(timeline: Timeline, source: str = "") -> dict[str, Any]:
    """The whole summary: every track, and label changes per second over all tracks, raw and shown."""
    interval = timeline.frame_interval_s
    categories = timeline.categories
    tracks = [track_summary(i, timeline.tracks[i], interval, categories) for i in sorted(timeline.tracks)]
    span = sum(track["span_s"] for track in tracks)
    rates = {kind: round(sum(track["label_changes"][kind] for track in tracks) / span, 4) if span > 0 else 0.0
             for kind in ("raw", "shown")}
    times = timeline.frame_times
    return {"source": source, "frames": len(times), "duration_s": round(times[-1] - times[0] + interval, 4),
            "frame_interval_s": round(interval, 5), "labels": categories, "changes_per_s": rates,
            "tracks": tracks}


@contextlib.contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it becomes ``path`` only once complete (a crash leaves no half file)."""
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")  # the suffix still names the format
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def write_csv(summary: dict[str, Any], path: Path) -> None:
    """One row per track."""
    labels = summary["labels"]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["track_id", "first_t", "last_t", "frames", "seconds", "dominant", "raw_changes_per_s",
                         "shown_changes_per_s", *(f"share_{name}" for name in labels)])
        for track in summary["tracks"]:
            writer.writerow([track["track_id"], track["first_t"], track["last_t"], track["frames"],
                             track["seconds"], track["dominant"], track["changes_per_s"]["raw"],
                             track["changes_per_s"]["shown"], *(track["share"][name] for name in labels)])


def plot_available() -> bool:
    """Whether the timeline can be drawn: matplotlib is optional (the device install leaves it out)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def no_plot_note() -> str:
    return f"note: no timeline.png: the plot needs matplotlib ({PLOT_HINT}); summary.json and summary.csv are written"


def prepare_output(out_dir: Path) -> None:
    """Check, before any work, that a summary can be written to ``out_dir`` (created if missing)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create summary folder {out_dir} ({exc.strerror})") from None


def runs(track: TrackLog, interval_s: float) -> Iterator[tuple[str, float, float]]:
    """(label, start, end) of each stretch of one shown label without a gap."""
    start = 0
    for i in range(1, len(track.t) + 1):
        ends = i == len(track.t) or track.label[i] != track.label[start] or (
            track.t[i] - track.t[i - 1] > GAP_FRAMES * interval_s)
        if ends:
            yield track.label[start], track.t[start], track.t[i - 1] + interval_s
            start = i


def plot_timeline(timeline: Timeline, summary: dict[str, Any], path: Path) -> None:
    """One panel per track: the shown label as coloured bars, the raw per-frame label as grey dots."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    longest = sorted(summary["tracks"], key=lambda track: -track["frames"])[:MAX_PLOTTED_TRACKS]
    shown = sorted(longest, key=lambda track: track["track_id"])
    used = {name for track in shown for name in (*timeline.tracks[track["track_id"]].label,
                                                 *timeline.tracks[track["track_id"]].raw)}
    labels = [name for name in summary["labels"] if name in used]
    row = {name: i for i, name in enumerate(labels)}
    if len(summary["tracks"]) > len(shown):
        log.info("timeline shows the %d longest of %d tracks", len(shown), len(summary["tracks"]))
    interval = summary["frame_interval_s"]
    figure = Figure(figsize=(10, 0.8 + (0.6 + 0.25 * len(labels)) * max(len(shown), 1)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(len(shown), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, track_summary in zip(axes, shown):
        track = timeline.tracks[track_summary["track_id"]]
        for name, start, end in runs(track, interval):
            ax.hlines(row[name], start, end, colors=EMOTION_COLORS.get(name, "#17becf"), linewidth=7)
        ax.plot(track.t, [row[name] for name in track.raw], ".", color="black", markersize=2.5, alpha=0.6)
        top = sorted(((v, k) for k, v in track_summary["share"].items() if v > 0), reverse=True)[:3]
        ax.set_title(f"track #{track_summary['track_id']}: dominant {track_summary['dominant']}  ("
                     + ", ".join(f"{k} {v:.0%}" for v, k in top) + ")", fontsize=9, loc="left")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.grid(axis="x", alpha=0.3)
    if not shown:
        axes[0].set_title("no faces")
    axes[-1].set_xlabel("time (s)   bars: shown (smoothed) label   dots: raw per-frame label")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_summary(timeline: Timeline, out_dir: Path, source: str = "",
                  plot: bool = True) -> tuple[dict[str, Any], list[Path]]:
    """summary.json, summary.csv and, where matplotlib is installed (and ``plot``), timeline.png in ``out_dir``,
    each complete or not there; the summary and the files written. OSError (naming the file) when one cannot be
    written."""
    prepare_output(out_dir)
    summary = summarize(timeline, source)
    json_path, csv_path, plot_path = (out_dir / name for name in SUMMARY_FILES)
    writes = [(json_path, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n")),
              (csv_path, lambda p: write_csv(summary, p))]
    if plot and plot_available():
        writes.append((plot_path, lambda p: plot_timeline(timeline, summary, p)))
    for path, write in writes:
        try:
            with replaced(path) as temporary:
                write(temporary)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    return summary, [path for path, _ in writes]


class SummarySink:
    """The per-track emotion summary of a run (``--summary DIR``): its frames' events gathered, written at the end.

    The folder is checked (made) when the sink is made, before the run; ``close`` writes the files
    (nothing for a run never opened: one that failed before its source was open) and hands the summary
    to ``report``. ``plot`` False: no timeline.png.
    """

    options = (Option("--summary", "summary_dir", "per-track emotion summary (JSON, CSV, timeline PNG) into DIR "
                      "at the end", type=Path, metavar="DIR",
                      writes=lambda folder, source: [folder / name for name in SUMMARY_FILES]),)

    @classmethod
    def build(cls, outputs: Outputs, context: Context) -> SummarySink | None:
        if not outputs.summary_dir:
            return None
        return cls(outputs.summary_dir, context.source, context.report, plot=context.plot)

    def __init__(self, out_dir: Path, source: str, report: Callable[[dict[str, Any]], None],
                 plot: bool = True) -> None:
        prepare_output(out_dir)
        self.path = out_dir
        self.source = source
        self.report = report
        self.plot = plot
        self.timeline = Timeline()
        self.opened = False

    def open(self, source: Source, paced: bool) -> None:
        self.opened = True

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.timeline.add(result.record())

    def close(self) -> None:
        """Write the files; OSError naming the one that cannot be written."""
        if self.opened:
            summary, _ = write_summary(self.timeline, self.path, source=self.source, plot=self.plot)
            self.report(summary)


def summary_table(summary: dict[str, Any]) -> str:
    """A short table: each track's span, dominant emotion, shares and label changes per second."""
    lines = [f"{'track':>6} {'from_s':>7} {'to_s':>7} {'frames':>6}  {'dominant':<9} "
             f"{'changes/s raw':>13} {'shown':>6}  share"]
    for track in summary["tracks"]:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(track["share"].items(), key=lambda kv: -kv[1]) if v)
        lines.append(f"{'#' + str(track['track_id']):>6} {track['first_t']:7.2f} {track['last_t']:7.2f} "
                     f"{track['frames']:6d}  {track['dominant']:<9} {track['changes_per_s']['raw']:13.2f} "
                     f"{track['changes_per_s']['shown']:6.2f}  {shares}")
    rates = summary["changes_per_s"]
    lines.append(f"{len(summary['tracks'])} tracks; label changes per second per track: raw {rates['raw']:.2f}, "
                 f"shown {rates['shown']:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.summary",
                                     description="Per-track emotion summary of an events file from edge.run.")
    parser.add_argument("events", type=Path, help="events file from --events (.jsonl, or .csv)")
    parser.add_argument("out_dir", type=Path, help="folder for summary.json, summary.csv and timeline.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        prepare_output(args.out_dir)
        summary, written = write_summary(read_events(args.events), args.out_dir, source=str(args.events))
    except (SummaryError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    print(summary_table(summary))
    print(f"wrote {', '.join(str(path) for path in written)}")
    if not plot_available():
        print(no_plot_note(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
