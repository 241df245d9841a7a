"""Builder of face-api-expression: face-api.js's FaceExpressionNet rebuilt in Keras from its TF.js weights, checked
against face-api's own JavaScript, converted to int8 and validated."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert import ConvertError
from convert.build import Request, Result, build
from convert.pretrained import (REPO_ROOT, SAMPLE_MEDIA, builder_parser, golden, golden_json, real_faces, run_builder,
                                run_tool, validation_table, working_directory)
from convert.tfjs import read_weights
from convert.tflite import import_tensorflow
from edge.datasets import canonical_label
from edge.model import load_model_info, save_model_info
from edge.models import SHIPPED

log = logging.getLogger(__name__)

NAME = "face-api-expression"
MODEL_FILE = SHIPPED[NAME]
NPM_PACKAGE = "@vladmandic/face-api@1.7.15"
MANIFEST = "model/face_expression_model-weights_manifest.json"  # and its shard, model/face_expression_model.bin
JS_BUNDLE = "dist/face-api.esm.js"  # tfjs bundled, pure JavaScript
REFERENCE_SCRIPT = Path(__file__).with_name("faceapi_reference.mjs")
INPUT_SIDE = 112  # pixels: FaceFeatureExtractor.forwardInput's toBatchTensor(112)
MEAN_RGB = (122.782, 117.001, 104.298)  # face-api: (x - MEAN_RGB) / 255 on RGB pixels
UPSTREAM_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # FACE_EXPRESSION_LABELS
BLOCK_CHANNELS = (32, 64, 128, 256)  # dense0..dense3 of FaceFeatureExtractor
# face-api crops its SSD detector's (taller than wide) box, pads it to a square with black and resizes it.
# Through Haar boxes, no margin reproduced face-api's own detectAllFaces().withFaceExpressions() best on the
# sample media's 30 faces (mean |log-prob diff| 0.092; 0.111 at 0.05, 0.205 at 0.1; see the model card).
FACE_MARGIN = 0.0
JS_TOLERANCE = 1e-4  # most a Keras probability may differ from face-api's JavaScript on the same crop
RANDOM_CROPS = 8  # noise crops checked against the JavaScript too (inputs far from any face)
GOLDEN_NAME = "face_api_expression.golden.json"
LICENSE_NAME = "LICENSE-face-api.txt"
CARD_NAME = "face_api_expression_int8.md"
# Figures measured in use (BENCHMARKS.md, "Expression models"), not by the build: the card carries them.
IN_USE = """## Measured in use (BENCHMARKS.md, "Expression models"; not by the build command)
| what | figure | command |
| --- | --- | --- |
| per face, int8, 1 thread (CPU ms) | 1.28 (load ~11; 0.82 on the quiet machine); with flip 2.70 (2.1x) | `python benchmarks/models.py --rounds 7 --calls 200` |
| the same in the device install (fresh venv, `pip install .`, no TensorFlow) | 1.24, flip 2.59 | the same command with that venv's python |
| sample media labelled by eye: 64 images, 6 people, happy 48 / neutral 16 | 100% (macro F1 1.00), also with `--flip` | `python benchmarks/labelled_samples.py --out /tmp/lab && python -m edge.evaluate /tmp/lab/labels.csv --model face-api-expression` |
| the clip's 59 labelled frames at 0.2x + noise 16 (~40 px faces), 3 noise seeds | 88.1 / 96.6 / 89.8%; with flip 94.9 / 98.3 / 94.9% | `python benchmarks/flip.py --seed 0` (1, 2) |
| label changes per second on those copies, raw (flip off -> on) | 6.25 -> 3.75 / 5.00 -> 3.75 / 5.83 -> 5.00 | the same |

The real labelled set is tiny (2 classes, 6 people): both shipped models are perfect on it, so it cannot
tell them apart. Issue 15 reports 88-92% on 50 posed lab faces (disgust 9/9, fear 4/5) against the
default's 68%; those faces are not in this repository, and face-api's training data is not published.
On small noisy faces flip averaging helps this model (fewer label changes, more frames right) at 2.1x
the classifier's cost; `classifier.flip = true` turns it on."""


def download_package(folder: Path) -> Path:
    """npm pack the face-api package (a tarball, no install, no scripts run) into ``folder``."""
    run_tool(["npm", "pack", NPM_PACKAGE, "--pack-destination", str(folder), "--silent"],
             f"downloading {NPM_PACKAGE}", "pass a local tarball with --package PATH (from `npm pack`)")
    tarballs = sorted(folder.glob("vladmandic-face-api-*.tgz"))
    if not tarballs:
        raise ConvertError(f"npm pack left no tarball in {folder}; pass one with --package PATH")
    return tarballs[0]


def unpack(tarball: Path, folder: Path) -> Path:
    """The npm tarball unpacked (its files under package/), checked to hold the model and the JavaScript."""
    if not tarball.is_file():
        raise ConvertError(f"package not found: {tarball}")
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(folder, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConvertError(f"not an npm package tarball: {tarball} ({exc})") from None
    package = folder / "package"
    missing = [p for p in (MANIFEST, "LICENSE", "package.json") if not (package / p).is_file()]
    if missing:
        raise ConvertError(f"{tarball} lacks {', '.join(missing)}: is it {NPM_PACKAGE}?")
    version = json.loads((package / "package.json").read_text()).get("version")
    if f"@{version}" not in NPM_PACKAGE:
        raise ConvertError(f"{tarball} is face-api {version}; this builder is checked against {NPM_PACKAGE}")
    return package


def keras_model(weights: dict[str, np.ndarray]) -> Any:
    """FaceExpressionNet in Keras: 4 dense blocks of separable convolutions, 7x7 average pool, dense, softmax.

    The sums are formed in face-api's order (out1 + (out2 + (out3 + out4))): no sum then feeds two
    later ones, so every ReLU fuses into its ADD when converted, and the int8 graph runs as one
    XNNPACK partition (2.1 -> 0.8 ms a face, see the model card).
    """
    tf = import_tensorflow()
    layers = tf.keras.layers
    expected = {f"dense{b}/conv{c}" for b in range(4) for c in range(4)}
    missing = sorted(n for n in expected if f"{n}/bias" not in weights) + [n for n in ("fc/weights", "fc/bias")
                                                                            if n not in weights]
    if missing:
        raise ConvertError(f"{MANIFEST} lacks weights {missing[:4]}: not FaceExpressionNet's")

    def separable(x: Any, name: str, stride: int, channels: int) -> Any:
        layer = layers.SeparableConv2D(channels, 3, strides=stride, padding="same", name=name.replace("/", "_"))
        y = layer(x)
        layer.set_weights([weights[f"{name}/depthwise_filter"], weights[f"{name}/pointwise_filter"],
                           weights[f"{name}/bias"]])
        return y

    inputs = x = tf.keras.Input((INPUT_SIDE, INPUT_SIDE, 3), name="face_rgb")
    for block, channels in enumerate(BLOCK_CHANNELS):
        prefix = f"dense{block}"
        if block == 0:
            conv = layers.Conv2D(channels, 3, strides=2, padding="same", name=f"{prefix}_conv0")
            out1 = conv(x)
            conv.set_weights([weights[f"{prefix}/conv0/filters"], weights[f"{prefix}/conv0/bias"]])
        else:
            out1 = separable(x, f"{prefix}/conv0", 2, channels)
        out1 = layers.ReLU()(out1)
        out2 = separable(out1, f"{prefix}/conv1", 1, channels)
        in3 = layers.ReLU()(layers.Add()([out1, out2]))
        out3 = separable(in3, f"{prefix}/conv2", 1, channels)
        in4 = layers.ReLU()(layers.Add()([out1, layers.Add()([out2, out3])]))
        out4 = separable(in4, f"{prefix}/conv3", 1, channels)
        x = layers.ReLU()(layers.Add()([out1, layers.Add()([out2, layers.Add()([out3, out4])])]))
    x = layers.AveragePooling2D(7, strides=2, padding="valid")(x)
    x = layers.Reshape((BLOCK_CHANNELS[-1],))(x)  # static: no shape ops in the converted graph
    dense = layers.Dense(len(UPSTREAM_LABELS), name="fc")
    x = dense(x)
    dense.set_weights([weights["fc/weights"], weights["fc/bias"]])
    return tf.keras.Model(inputs, layers.Softmax()(x), name="face_expression_net")


def js_probabilities(package: Path, crops: np.ndarray, workdir: Path) -> np.ndarray:
    """face-api's own JavaScript (FaceExpressionNet.forwardInput, tfjs CPU backend) on (n, 112, 112, 3) RGB crops."""
    if shutil.which("node") is None:
        raise ConvertError("node is not installed: the Keras rebuild cannot be checked against face-api's JavaScript "
                           "(apt install nodejs, or pass --no-js-check to build unchecked)")
    inputs = []
    for i, crop in enumerate(crops):
        path = workdir / f"crop_{i:04d}.rgb"
        np.ascontiguousarray(crop, np.uint8).tofile(path)
        inputs.append({"file": str(path), "height": crop.shape[0], "width": crop.shape[1]})
    request = workdir / "request.json"
    request.write_text(json.dumps({"package": str(package), "mode": "expressions", "inputs": inputs}))
    done = subprocess.run(["node", "--no-warnings", str(REFERENCE_SCRIPT), str(request)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConvertError(f"face-api's JavaScript failed on node ({last[0][:200]})")
    return np.array(json.loads(done.stdout), np.float32).reshape(len(crops), len(UPSTREAM_LABELS))


def js_check(package: Path, result: Result, workdir: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The Keras rebuild against face-api's JavaScript on every real face crop and on noise; one-line error past JS_TOLERANCE."""
    faces = real_faces(result)
    crops = np.stack([crop for *_, crop in faces])
    keras = np.stack([probs for _, _, probs, _ in faces])
    noise = np.random.default_rng(0).integers(0, 256, (RANDOM_CROPS, *crops.shape[1:]), dtype=np.uint8)
    js = js_probabilities(package, np.concatenate([crops, noise]), workdir)
    model = keras_model(read_weights(package / MANIFEST))
    keras_noise = model.predict(result.info.network_input(noise), verbose=0)
    diff = np.abs(np.concatenate([keras, keras_noise]) - js)
    record = {"faces": len(crops), "noise_crops": RANDOM_CROPS, "max_abs_prob_diff": float(diff.max()),
              "top1_agreement": float((np.concatenate([keras, keras_noise]).argmax(1) == js.argmax(1)).mean()),
              "runtime": f"node {node_version()}, {NPM_PACKAGE} {JS_BUNDLE} (tfjs cpu backend)"}
    log.info("Keras rebuild vs face-api's JavaScript: max |prob diff| %.2g on %d face and %d noise crops",
             diff.max(), len(crops), RANDOM_CROPS)
    if diff.max() > JS_TOLERANCE:
        raise ConvertError(f"the Keras rebuild differs from face-api's JavaScript by up to {diff.max():.3g} "
                           f"(more than {JS_TOLERANCE}): the architecture or the weights were read wrongly")
    return record, js[:len(crops)]


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def request_for(keras: Path, out_dir: Path, args: argparse.Namespace, tarball: Path) -> Request:
    out = out_dir / MODEL_FILE
    if out_dir.is_relative_to(REPO_ROOT):
        out = out.relative_to(REPO_ROOT)
    labels = tuple(canonical_label(label) for label in UPSTREAM_LABELS)
    return Request(
        keras=keras, out=out, quant="int8", labels=labels, color="rgb", mean=tuple(v / 255 for v in MEAN_RGB),
        std=(1.0,), face_margin=FACE_MARGIN, calib=tuple(Path(p) for p in SAMPLE_MEDIA), holdout=0.5,
        augment=not args.no_augment, per_channel=not args.per_tensor, source_name=f"{NPM_PACKAGE}:{MANIFEST}",
        provenance={"upstream": {
            "package": NPM_PACKAGE, "tarball": tarball.name, "tarball_sha256": sha256(tarball),
            "files": [MANIFEST, "model/face_expression_model.bin"], "license": f"MIT (see {LICENSE_NAME})",
            "architecture": "face-api.js FaceExpressionNet: FaceFeatureExtractor (4 dense blocks of depthwise-"
                            "separable convolutions), 7x7 average pool, fully connected, softmax; rebuilt in Keras",
            "labels_upstream": list(UPSTREAM_LABELS),
            "training_data": "not published by face-api.js; its accuracy is not known from upstream",
        }},
    )


def record_js_check(out: Path, record: dict[str, Any]) -> None:
    """The JavaScript check into the model's sidecar provenance and its report."""
    info = load_model_info(out)
    save_model_info(dataclasses.replace(info, provenance={**info.provenance, "js_reference": record}), out)
    report_path = out.with_name(out.stem + ".report.json")
    report = json.loads(report_path.read_text())
    report["js_reference"] = record
    report_path.write_text(json.dumps(report, indent=2) + "\n")


def card(result: Result, record: dict[str, Any] | None, command: str) -> str:
    r = result.report
    val = r["validation"]
    val_frames = ", ".join(f"{Path(s['source']).name} frames {s['first']}-{s['last']}" for s in val["sources"])
    check = (f"On all {record['faces']} real face crops of the sample media and {record['noise_crops']} noise "
             f"crops, the Keras rebuild's probabilities are within {record['max_abs_prob_diff']:.2g} of face-api's "
             f"own JavaScript ({record['runtime']}), same top-1 on {record['top1_agreement']:.0%}."
             if record else "Not checked against the JavaScript in this build (--no-js-check).")
    labels = ", ".join(r_label for r_label in result.info.labels)
    return f"""# `{NAME}`: `{MODEL_FILE}`

face-api.js's expression model (`FaceExpressionNet`, the fork `{NPM_PACKAGE}` on npm, MIT) rebuilt
in Keras from its TensorFlow.js weights and converted here to a full-integer TFLite model.
Choose it with `--model {NAME}` (or `classifier.model = "{NAME}"`).

| file | what |
| --- | --- |
| `{MODEL_FILE}` | int8 model: int8 input and output, per-channel int8 weights |
| `{Path(MODEL_FILE).with_suffix('.json').name}` | its sidecar: labels, 112x112 RGB input, per-channel mean, provenance, the JavaScript check |
| `{Path(MODEL_FILE).stem}.report.json` | the validation report of the conversion |
| `{GOLDEN_NAME}` | face-api's JavaScript probabilities on the sample media's face crops, for `tests/test_convert.py` |
| `{LICENSE_NAME}` | the MIT licence of face-api, which covers the weights |

## Where it came from
- Upstream: `{MANIFEST}` and `model/face_expression_model.bin` in the npm tarball of
  `{NPM_PACKAGE}` (MIT licence, copied to `{LICENSE_NAME}`); the architecture read from the
  package's own source (`src/faceFeatureExtractor/`, `src/faceExpressionNet/`).
- Classes, in output order: {labels} (upstream: {", ".join(UPSTREAM_LABELS)}).
- Input: 112x112 RGB, normalised as face-api does, `(x - [{", ".join(map(str, MEAN_RGB))}]) / 255`
  (sidecar: per-channel mean, std 1). face margin {FACE_MARGIN}: face-api crops its SSD MobileNet box (taller
  than wide), pads it to a square with black and resizes it. Through Haar boxes, margins of 0 to 0.2 were
  compared with face-api's own `detectAllFaces().withFaceExpressions()` on 30 faces of the sample media
  (the Keras rebuild on our crops against the JavaScript pipeline's output, matched at IoU > 0.4): mean
  |log-probability difference| 0.092 at 0, 0.134 at 0.025, 0.111 at 0.05, 0.205 at 0.1, 2.17 at 0.2, same
  top-1 on all 30 at every margin; {FACE_MARGIN} came closest (BENCHMARKS.md, "Expression models").
- Accuracy: face-api does not publish its training data or a test-set accuracy. Measure it on your
  own labelled faces with `python -m edge.evaluate DATA --model {NAME}`.

## The JavaScript check
{check} The check runs face-api's pure-JavaScript ESM build (tfjs bundled, CPU backend) with
`node` (`convert/faceapi_reference.mjs`); the build fails past {JS_TOLERANCE}.

## How it was built
```
{command}
```
`npm pack {NPM_PACKAGE}` (or `--package PATH`: a tarball from `npm pack`), weights read by
`convert/tfjs.py` (uint8-quantized weights dequantized as `q * scale + min`), the Keras rebuild checked
against the JavaScript, int8 calibrated on real face crops from `tests/data` found and cut by the runtime's
own detector and `edge.crop.detect_and_crop`, converted with TensorFlow {r['environment']['tensorflow']},
validated on held-out faces ({val_frames}: one person, so this checks quantization, not accuracy).

{validation_table(result, "shipped")}

The sums inside each dense block are formed in face-api's own order (`out1 + (out2 + (out3 + out4))`).
Summed left to right (`(out1 + out2) + out3`), the TFLite converter reuses `out1 + out2` for two
later sums; the ReLU after it can then not be fused into its ADD, XNNPACK does not take a lone int8
ReLU, and the int8 graph is cut into 10 partitions: 2.1 instead of 0.8 ms a face on this machine.

{IN_USE}
"""


def build_model(args: argparse.Namespace) -> Result:
    out_dir = args.out_dir.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        tarball = args.package.resolve() if args.package else download_package(tmp_dir)
        package = unpack(tarball, tmp_dir)
        keras_path = tmp_dir / "face_expression_net.keras"
        keras_model(read_weights(package / MANIFEST)).save(keras_path)
        with working_directory(REPO_ROOT):
            result = build(request_for(keras_path, out_dir, args, tarball))
            out = Path(result.report["model"]).resolve()
        record, reference = (None, None) if args.no_js_check else js_check(package, result, tmp_dir)
        if record is not None:
            record_js_check(out, record)
        else:
            log.warning("not checked against face-api's JavaScript (--no-js-check)")
        source = ("face-api's own JavaScript probabilities (FaceExpressionNet on the tfjs CPU backend)" if record
                  else "the Keras rebuild's probabilities (not checked against the JavaScript)")
        about = (f"{source} on face crops of the sample media (edge.crop.model_crops(frame, [box], model)); "
                 f"regenerate with `python -m convert.pretrained --name {NAME}`")
        (out_dir / GOLDEN_NAME).write_text(golden_json(golden(result, MODEL_FILE, about, reference)))
        (out_dir / LICENSE_NAME).write_text((package / "LICENSE").read_text())
        (out_dir / CARD_NAME).write_text(card(result, record, f"python -m convert.pretrained --name {NAME}"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = builder_parser(NAME, __doc__, f"a local {NPM_PACKAGE} tarball from `npm pack` (default: npm pack it)")
    parser.add_argument("--no-js-check", action="store_true",
                        help="skip the check against face-api's JavaScript (when node is not installed)")
    return run_builder(build_model, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
