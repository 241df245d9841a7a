"""The BlazeFace detector's model: MediaPipe's short-range face detector, extracted from the mediapipe wheel.

    python -m convert.blazeface                   # pip download --no-deps mediapipe==0.10.14, extract, check
    python -m convert.blazeface --wheel PATH.whl  # from a wheel already downloaded (any platform's)

Writes ``edge/models/face_detection_short_range.tflite`` (229,714 bytes, checked by size and
SHA-256), the wheel's Apache-2.0 licence and a provenance README beside it. Later mediapipe
wheels no longer carry the file. Nothing is downloaded at run time: the runtime (LiteRT) only
reads the extracted model. ``extract_blazeface`` is the same step for other tools (a model zoo).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from convert import ConvertError, wheel_members
from edge.blazeface import DEFAULT_MODEL

log = logging.getLogger(__name__)

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.14"
MODEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
MODEL_BYTES = 229_714
MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
LICENSE_SUFFIX = ".dist-info/LICENSE"
LICENSE_NAME = "LICENSE-mediapipe.txt"
README_NAME = "README-blazeface.md"


@dataclass(frozen=True)
class Extracted:
    """What ``extract_blazeface`` wrote."""

    model: Path
    license: Path
    readme: Path
    wheel: str  # the wheel's file name


def download_wheel(folder: Path, requirement: str = MEDIAPIPE_REQUIREMENT) -> Path:
    """``pip download --no-deps`` the wheel for this platform into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--dest", str(folder), requirement]
    log.info("downloading %s: %s", requirement, " ".join(command[2:]))
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ConvertError(f"could not download {requirement} ({last[0]}); pass a local wheel with --wheel PATH")
    return wheels[0]


def read_members(wheel: Path) -> tuple[bytes, bytes]:
    """The model's and the licence's bytes out of a mediapipe wheel, the model checked by size and hash."""
    model, license_text = wheel_members(wheel, MODEL_MEMBER, lambda name: name.startswith("mediapipe-")
                                        and name.endswith(LICENSE_SUFFIX), MEDIAPIPE_REQUIREMENT)
    digest = hashlib.sha256(model).hexdigest()
    if len(model) != MODEL_BYTES or digest != MODEL_SHA256:
        raise ConvertError(f"{MODEL_MEMBER} in {wheel.name} is {len(model):,} bytes with SHA-256 {digest}; "
                           f"expected {MODEL_BYTES:,} bytes, {MODEL_SHA256}")
    return model, license_text


def readme(wheel_name: str) -> str:
    return f"""# BlazeFace short-range: `face_detection_short_range.tflite`

The model of the `blazeface` detector (`detector.kind = "blazeface"`, `edge/blazeface.py`).

| file | what |
| --- | --- |
| `face_detection_short_range.tflite` | MediaPipe's short-range face detector: 128x128 RGB in [-1, 1], 896 SSD anchors, a box and 6 keypoints each ({MODEL_BYTES:,} bytes, SHA-256 `{MODEL_SHA256}`) |
| `{LICENSE_NAME}` | the Apache License 2.0 of MediaPipe, which covers the model |

## Where it came from
- Upstream: `{MODEL_MEMBER}` in the wheel `{wheel_name}` of `{MEDIAPIPE_REQUIREMENT}` on PyPI
  (Google, Apache-2.0; the licence file is the wheel's own `.dist-info/LICENSE`). Later mediapipe
  wheels no longer carry it. The model's card: "BlazeFace (short range)", for faces within about
  2 m of a phone or webcam camera.
- Extracted unchanged by `python -m convert.blazeface` (`pip download --no-deps {MEDIAPIPE_REQUIREMENT}`,
  or `--wheel PATH`), which checks the file's size and SHA-256.
- The runtime runs it on LiteRT and needs no MediaPipe: the anchor grid (strides 8, 16, 16, 16; two
  anchors a layer) and the box decoding follow MediaPipe's `face_detection_short_range.pbtxt`,
  `ssd_anchors_calculator` and `tensors_to_detections_calculator`, reimplemented in `edge/blazeface.py`.
"""


def extract_blazeface(out_dir: Path = DEFAULT_MODEL.parent, wheel: Path | None = None) -> Extracted:
    """Download (or take) the mediapipe wheel, and write the model, its licence and its README into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="blazeface-") as tmp:
        wheel = wheel or download_wheel(Path(tmp))
        model, license_text = read_members(wheel)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = Extracted(out_dir / DEFAULT_MODEL.name, out_dir / LICENSE_NAME, out_dir / README_NAME, wheel.name)
    paths.model.write_bytes(model)
    paths.license.write_bytes(license_text)
    paths.readme.write_text(readme(wheel.name))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.blazeface", description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", "--package", type=Path, dest="wheel",
                        help=f"a {MEDIAPIPE_REQUIREMENT} wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL.parent, help="folder to write into (edge/models)")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        written = extract_blazeface(args.out, args.wheel)
    except (ConvertError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written.model} ({MODEL_BYTES:,} bytes, SHA-256 checked), {written.license}, {written.readme} "
          f"from {written.wheel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
