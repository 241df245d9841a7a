"""Test-time flip averaging (classifier.flip): its effect on label stability and agreement, per model and clip.

    python benchmarks/flip.py                                  # both shipped models, the clip and degraded copies
    python benchmarks/flip.py --models face-api-expression --json flip.json

Each model runs `python -m edge.run --events` on the same clip with flip off and on (a config file
each), on the clip as it is and on seeded degraded copies (benchmarks/flicker.py's: small and noisy
faces). Reported per run: raw and shown label changes per second (flicker.py's replay of the
recorded faces), top-1 agreement of the raw labels with flip on vs off, and the share of the clip's
labelled frames (benchmarks/labelled_samples.py: neutral 0-15, happy 24-66) read right.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.flicker import degraded_copy, record_events, recorded_frames, replay, stability  # noqa: E402
from benchmarks.labelled_samples import CLIP, CLIP_FRAMES, DATA  # noqa: E402
from benchmarks.report import publish  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.models import SHIPPED  # noqa: E402

VARIANTS = {"as is": (1.0, 0.0), "scale 0.35, noise 8": (0.35, 8.0), "scale 0.25, noise 12": (0.25, 12.0),
            "scale 0.2, noise 16": (0.2, 16.0)}


def raw_labels(records: list[dict[str, Any]]) -> dict[int, str]:
    """Frame -> the top raw label of its largest face."""
    out = {}
    for record in records:
        if record["faces"]:
            face = max(record["faces"], key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
            out[record["frame"]] = max(face["probs"], key=face["probs"].get)
    return out


def by_eye(labels: dict[int, str]) -> float:
    truth = {i: label for label, frames in CLIP_FRAMES.items() for i in frames}
    return float(np.mean([labels.get(i) == label for i, label in truth.items()]))


def run(model: str, flip: bool, clip: Path, workdir: Path) -> dict[str, Any]:
    config = workdir / f"{model}_{flip}.toml"
    config.write_text(f'[classifier]\nmodel = "{model}"\nflip = {str(flip).lower()}\n')
    events = record_events(clip, config, workdir / f"{model}_{flip}_{clip.stem}.jsonl")
    records, labels = recorded_frames(events)
    timeline, _, _ = replay(records, labels, load_config(config))
    rates = stability(timeline)
    return {"changes_per_s": rates["changes_per_s"], "labels": raw_labels(records)}


def measure(models: list[str], seed: int) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for variant, (scale, noise) in VARIANTS.items():
            clip = DATA / CLIP
            if scale != 1.0 or noise > 0:
                clip = degraded_copy(clip, scale, noise, seed, workdir / f"clip_{scale}_{noise}.mp4")
            for model in models:
                off, on = run(model, False, clip, workdir), run(model, True, clip, workdir)
                common = sorted(set(off["labels"]) & set(on["labels"]))
                agreement = float(np.mean([off["labels"][i] == on["labels"][i] for i in common])) if common else None
                rows.append({"clip": variant, "model": model, "frames_with_face": len(common),
                             "flip_vs_no_flip_top1": agreement,
                             **{f"{name}_{key}": value for name, result in (("off", off), ("on", on))
                                for key, value in (("raw_changes_per_s", result["changes_per_s"]["raw"]),
                                                   ("shown_changes_per_s", result["changes_per_s"]["shown"]),
                                                   ("by_eye", by_eye(result["labels"])))}})
    return {"seed": seed, "rows": rows}


def text(result: dict[str, Any]) -> str:
    lines = [f"{'clip':<20} {'model':<22} {'agree':>6} {'raw/s off':>9} {'on':>5} {'shown/s off':>11} {'on':>5} "
             f"{'by eye off':>10} {'on':>5}"]
    for r in result["rows"]:
        agree = "-" if r["flip_vs_no_flip_top1"] is None else f"{r['flip_vs_no_flip_top1']:.1%}"
        lines.append(f"{r['clip']:<20} {r['model']:<22} {agree:>6} {r['off_raw_changes_per_s']:>9.2f} "
                     f"{r['on_raw_changes_per_s']:>5.2f} {r['off_shown_changes_per_s']:>11.2f} "
                     f"{r['on_shown_changes_per_s']:>5.2f} {r['off_by_eye']:>10.1%} {r['on_by_eye']:>5.1%}")
    lines.append("agree: raw top-1 with flip on vs off; by eye: labelled frames of the clip read right (59 frames)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SHIPPED))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.models, args.seed)
    publish(text(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
