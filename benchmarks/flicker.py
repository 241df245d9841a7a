"""Label stability: label changes per second per track, raw vs smoothed, the switch delay, and the per-frame cost.

    python benchmarks/flicker.py                                   # the sample clip as it is
    python benchmarks/flicker.py --scale 0.2 --noise 16            # a small (~40 px), noisy face
    python benchmarks/flicker.py --events faces.jsonl              # an events file you already have

The clip runs once through ``python -m edge.run --events``; the recorded boxes and raw probabilities are
then replayed through the same tracker and smoother (checked to reproduce the run's labels) to time them
and to compare smoothing settings without running the pipeline again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/flicker.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.stats import summarize as stats  # noqa: E402
from edge.config import Config, load_config  # noqa: E402
from edge.results import UNCERTAIN, Faces  # noqa: E402
from edge.summary import Timeline, TrackLog, jsonl_records, summarize  # noqa: E402
from edge.track import TrackedLabels  # noqa: E402

log = logging.getLogger("benchmarks.flicker")

DEFAULT_SOURCE = REPO_ROOT / "tests" / "data" / "single_face.mp4"
VARIANTS = {  # smoothing settings compared on the same recorded frames; "config" = the run's own
    "raw (smoothing off)": {"enabled": False},
    "ema half-life 0.1 s": {"method": "ema", "half_life_s": 0.1},
    "config": {},
    "ema half-life 0.3 s": {"method": "ema", "half_life_s": 0.3},
    "window 0.4 s": {"method": "window", "window_s": 0.4},
    "ema 0.15 s, no hysteresis": {"method": "ema", "half_life_s": 0.15, "hysteresis": 0.0},
}


def degraded_copy(source: Path, scale: float, noise: float, seed: int, out: Path) -> Path:
    """The clip resized by ``scale`` with Gaussian pixel noise of ``noise`` grey levels (seeded), as mp4v."""
    rng = np.random.default_rng(seed)
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if noise > 0:
            frame = np.clip(frame + rng.normal(0.0, noise, frame.shape), 0, 255).astype(np.uint8)
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    if writer is None:
        raise SystemExit(f"error: not a decodable video: {source}")
    writer.release()
    return out


def record_events(source: Path, config: Path | None, out: Path) -> Path:
    """Run the CLI headless on the source, writing its events to ``out``."""
    command = [sys.executable, "-m", "edge.run", "--source", str(source), "--headless", "--events", str(out)]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: edge.run failed: {result.stderr.strip().splitlines()[-1:]}")
    return out


def recorded_frames(events: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The events of every frame, and the label order of their probabilities."""
    records = list(jsonl_records(events))
    labels = next((tuple(face["probs"]) for record in records for face in record["faces"]), ())
    if not labels:
        raise SystemExit(f"error: no faces in {events}")
    return records, labels


def raw_faces(record: dict[str, Any], labels: tuple[str, ...]) -> Faces:
    """A frame's faces as the classifier gave them: boxes and raw probabilities, no track."""
    boxes = np.array([face["box"] for face in record["faces"]], np.int32).reshape(-1, 4)
    probs = np.array([[face["probs"][name] for name in labels] for face in record["faces"]], np.float32)
    return Faces(boxes, probs.reshape(-1, len(labels)), labels)


def replay(records: list[dict[str, Any]], labels: tuple[str, ...],
           config: Config) -> tuple[Timeline, list[float], list[str]]:
    """The recorded frames through a fresh tracker and smoother: timeline, per-frame cost in µs, shown labels."""
    tracks = TrackedLabels(dataclasses.replace(config.tracker, enabled=True), config.smoothing, labels)
    frames = [(raw_faces(record, labels), float(record["t"])) for record in records]
    timeline, costs, shown = Timeline(), [], []
    for (faces, t), record in zip(frames, records):
        start = time.perf_counter()
        faces = tracks.update(faces, t)
        costs.append((time.perf_counter() - start) * 1e6)
        timeline.add({"t": t, "faces": faces.records()})
        shown += faces.shown_label
    return timeline, costs, shown


def switch_lags(track: TrackLog) -> list[float]:
    """Per change of the shown label to L: seconds since the raw label first read L after the previous change."""
    lags, previous = [], 0
    for i in range(1, len(track.t)):
        if track.label[i] == track.label[i - 1]:
            continue
        if track.label[i] != UNCERTAIN:
            first = next((j for j in range(previous, i + 1) if track.raw[j] == track.label[i]), i)
            lags.append(track.t[i] - track.t[first])
        previous = i
    return lags


def stability(timeline: Timeline) -> dict[str, Any]:
    """Label changes per second per track (raw and shown), track count and switch delays."""
    summary = summarize(timeline)
    lags = [lag for track in timeline.tracks.values() for lag in switch_lags(track)]
    return {"tracks": len(summary["tracks"]), "changes_per_s": summary["changes_per_s"],
            "changes": {kind: sum(t["label_changes"][kind] for t in summary["tracks"]) for kind in ("raw", "shown")},
            "switch_delay_s": [round(lag, 4) for lag in lags]}


def compare(records: list[dict[str, Any]], labels: tuple[str, ...], config: Config, repeats: int) -> dict[str, Any]:
    """Every smoothing variant replayed: stability and the tracker + smoother cost per frame."""
    out: dict[str, Any] = {}
    for name, values in VARIANTS.items():
        smoothing = dataclasses.replace(config.smoothing, **values) if values else config.smoothing
        variant = dataclasses.replace(config, smoothing=smoothing)
        timeline, costs, shown = replay(records, labels, variant)
        out[name] = stability(timeline)
        for _ in range(repeats - 1):
            costs += replay(records, labels, variant)[1]
        out[name]["cost_us_per_frame"] = {k: round(v, 1) for k, v in stats(costs).items()}
        if name == "config":
            recorded = [face["label"] for record in records for face in record["faces"]]
            out[name]["replay_matches_run"] = shown == recorded
    return out


def delays(values: list[float]) -> str:
    """The switch delays, or their median where there are many."""
    return str(values) if len(values) <= 4 else f"{len(values)} switches, median {float(np.median(values)):.3f}"


def text(result: dict[str, Any]) -> str:
    degraded = f", scale {result['scale']}, noise {result['noise']}, seed {result['seed']}" if (
        result["scale"] != 1.0 or result["noise"] > 0) else ""
    lines = [f"source: {result['source']}  ({result['frames']} frames{degraded})",
             f"{'smoothing':<28} {'tracks':>6} {'changes raw':>11} {'shown':>6} {'/s raw':>7} {'/s shown':>8} "
             f"{'µs p50':>7} {'p95':>5}  delay_s"]
    for name, row in result["variants"].items():
        rates, changes, cost = row["changes_per_s"], row["changes"], row["cost_us_per_frame"]
        lines.append(f"{name:<28} {row['tracks']:6d} {changes['raw']:11d} {changes['shown']:6d} {rates['raw']:7.2f} "
                     f"{rates['shown']:8.2f} {cost['p50']:7.0f} {cost['p95']:5.0f}  {delays(row['switch_delay_s'])}")
    lines.append("µs: tracker + smoother per frame (the first row: tracker alone); replay reproduces the run's "
                 f"labels: {result['variants']['config']['replay_matches_run']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="video to run (default: the sample clip)")
    parser.add_argument("--events", type=Path, help="replay this events file (.jsonl) instead of running a video")
    parser.add_argument("--scale", type=float, default=1.0, help="resize the video first (0.2 = 40 px face)")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian pixel noise to add, grey levels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="TOML config for the run and the replay")
    parser.add_argument("--repeats", type=int, default=20, help="replays timed for the per-frame cost")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level="WARNING")
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        events = args.events
        if events is None:
            source = args.source
            if args.scale != 1.0 or args.noise > 0:
                source = degraded_copy(source, args.scale, args.noise, args.seed, Path(tmp) / "degraded.mp4")
            events = record_events(source, args.config, Path(tmp) / "events.jsonl")
        records, labels = recorded_frames(events)
        result = {"source": str(args.events or args.source), "scale": args.scale, "noise": args.noise,
                  "seed": args.seed, "frames": len(records),
                  "smoothing": dataclasses.asdict(config.smoothing), "tracker": dataclasses.asdict(config.tracker),
                  "variants": compare(records, labels, config, max(1, args.repeats))}
    print(text(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
