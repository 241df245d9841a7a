"""Expression models side by side: per-face latency (1 thread), one invoke per face vs batched, the cost of flip, size.

    python benchmarks/models.py                                 # every shipped model, on the sample clip's faces
    python benchmarks/models.py --models face-api-expression my_int8.tflite --rounds 7 --json out.json

Faces are cut from the clip exactly as the detector process cuts them (each model its own crop). The
models take turns round after round (the shared machine's speed drifts); each figure is the median
over rounds of the per-round median. CPU time of the calling thread is reported beside wall time:
with one interpreter thread it is what a face costs, whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/models.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.classifier import face_crops  # noqa: E402
from benchmarks.report import publish  # noqa: E402
from edge.classify import Classifier  # noqa: E402
from edge.config import Config  # noqa: E402
from edge.models import SHIPPED, model_name, resolve_model  # noqa: E402

DEFAULT_VIDEO = REPO_ROOT / "tests" / "data" / "single_face.mp4"
BATCHES = (4, 16)  # faces per batched invoke
MODES = ("per face", "flip", *(f"batch {n}" for n in BATCHES))


def per_face_ms(classifier: Classifier, crops: np.ndarray, faces: int, calls: int) -> tuple[float, float, float]:
    """Median wall, median thread-CPU and 99th-percentile thread-CPU ms per face over ``calls`` calls of ``faces``."""
    wall, cpu = [], []
    for i in range(calls):
        start = (i * faces) % max(1, len(crops) - faces)
        batch = crops[start:start + faces]
        t0, c0 = time.perf_counter(), time.thread_time()
        classifier.classify(batch)
        wall.append((time.perf_counter() - t0) * 1000 / faces)
        cpu.append((time.thread_time() - c0) * 1000 / faces)
    return float(np.median(wall)), float(np.median(cpu)), float(np.percentile(cpu, 99))


def classifiers(path: Path) -> dict[str, Classifier]:
    """The same model in every mode measured (one interpreter thread each)."""
    made = {"per face": Classifier(path), "flip": Classifier(path, flip=True)}
    for n in BATCHES:
        made[f"batch {n}"] = Classifier(path, batch=True)
    return made


def measure(paths: list[Path], video: Path, rounds: int, calls: int) -> dict[str, Any]:
    config = Config()
    setups = {}
    for path in paths:
        made = classifiers(path)
        crops = face_crops(video, config, made["per face"].info, 80)
        if not len(crops):
            raise SystemExit(f"error: no faces found in {video}")
        for classifier in made.values():  # warm-up: allocation, caches
            classifier.classify(crops[:16])
        setups[path] = (made, crops)
    samples: dict[Path, dict[str, list[tuple[float, float, float]]]] = {p: {m: [] for m in MODES} for p in paths}
    for _ in range(rounds):
        for path, (made, crops) in setups.items():
            for mode, classifier in made.items():
                faces = int(mode.split()[1]) if mode.startswith("batch") else 1
                samples[path][mode].append(per_face_ms(classifier, crops, faces, max(4, calls // faces)))
    rows = []
    for path, (made, crops) in setups.items():
        info = made["per face"].info
        row = {"model": model_name(path), "path": str(path), "size_bytes": path.stat().st_size,
               "input": f"{info.input_height}x{info.input_width} {info.color}", "faces": int(len(crops))}
        for mode in MODES:
            rounds_ms = np.array(samples[path][mode])  # (rounds, 3)
            wall, cpu, _ = np.median(rounds_ms, axis=0)
            # the worst: the slowest round's median, and the slowest round's 99th percentile of calls
            row[mode] = {"wall_ms": round(float(wall), 4), "cpu_ms": round(float(cpu), 4),
                         "cpu_ms_worst_round": round(float(rounds_ms[:, 1].max()), 4),
                         "cpu_ms_p99_worst_round": round(float(rounds_ms[:, 2].max()), 4)}
        report = path.with_name(path.stem + ".report.json")
        if report.is_file():  # agreement with the float original, measured by the conversion
            conversion = json.loads(report.read_text())
            row["int8_vs_float"] = conversion["validation"]["converted"]
            row["js_reference"] = conversion.get("js_reference")
        rows.append(row)
    return {"video": str(video), "rounds": rounds, "calls_per_round": calls, "threads": 1, "models": rows}


def text(result: dict[str, Any]) -> str:
    lines = [f"per-face ms, 1 thread, median of {result['rounds']} rounds (wall / thread CPU); faces of {result['video']}",
             f"{'model':<24} {'input':<12} {'bytes':>9} " + " ".join(f"{m:>15}" for m in MODES) + "  int8 vs float"]
    for row in result["models"]:
        agree = row.get("int8_vs_float")
        agreement = (f"{agree['top1_agreement']:.1%} of {agree['faces']}, mean |d| {agree['mean_abs_prob_diff']}"
                     if agree else "-")
        cells = " ".join(f"{row[m]['wall_ms']:>7.3f}/{row[m]['cpu_ms']:<7.3f}" for m in MODES)
        lines.append(f"{row['model']:<24} {row['input']:<12} {row['size_bytes']:>9,} {cells}  {agreement}")
    lines += ["", "the worst, thread CPU ms a face: slowest round's median / slowest round's 99th percentile of calls",
              f"{'model':<24} " + " ".join(f"{m:>15}" for m in MODES)]
    for row in result["models"]:
        worst = " ".join(f"{row[m]['cpu_ms_worst_round']:>7.3f}/{row[m]['cpu_ms_p99_worst_round']:<7.3f}" for m in MODES)
        lines.append(f"{row['model']:<24} {worst}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SHIPPED), help="names or .tflite paths (default: shipped)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="single-face calls per round and mode")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = measure([resolve_model(m) for m in args.models], args.video, args.rounds, args.calls)
    publish(text(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
