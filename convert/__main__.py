"""Command line: python -m convert --keras model.keras --out model.tflite --calib faces/ [options]."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from convert import ConvertError
from convert.build import DEFAULT_MAX_CALIB, DEFAULT_MAX_VAL, DEFAULT_MIN_CALIB, Request, build
from convert.tflite import QUANT_MODES
from convert.validate import format_report
from edge.detect import DetectorError
from edge.model import COLORS, FER2013_LABELS, ModelError

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
EXIT_BELOW_AGREEMENT = 1


def parse_labels(text: str) -> tuple[str, ...]:
    labels = tuple(label.strip() for label in text.split(",") if label.strip())
    if len(labels) < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 comma-separated labels, got {text!r}")
    return labels


def channel_values(text: str) -> tuple[float, ...]:
    """--mean / --std: one number, or comma-separated numbers, one per channel."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}")
    return values


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert a Keras expression model to a (quantized) TFLite model with sidecar "
        "metadata, and check on real held-out faces that it still agrees with the float model.",
    )
    p.add_argument("--keras", type=Path, required=True, help="Keras model (.keras, .h5, .hdf5)")
    p.add_argument("--out", type=Path, required=True, help="output .tflite; <stem>.json metadata goes beside it")
    p.add_argument("--quant", choices=QUANT_MODES, default="int8",
                   help="int8: full integer with int8 input/output, per-channel weights (default); "
                   "float16; dynamic: int8 weights, float activations; none: float32")
    p.add_argument("--labels", type=parse_labels, default=None,
                   help=f"class labels in output order (default: <keras stem>.json's, else {','.join(FER2013_LABELS)})")
    p.add_argument("--color", choices=COLORS, default=None,
                   help="input colour (default: <keras stem>.json's, else gray for 1 channel, rgb for 3)")
    p.add_argument("--mean", type=channel_values, default=None,
                   help="input normalisation (x/255 - mean)/std: one value, or one per channel "
                   "as R,G,B / B,G,R in the input's order (default 0)")
    p.add_argument("--std", type=channel_values, default=None, help="(default 1)")
    p.add_argument("--face-margin", type=fraction, default=None,
                   help="fraction of the face box added on every side before cropping (default 0)")
    p.add_argument("--calib", type=Path, nargs="+", default=[], metavar="PATH",
                   help="faces to calibrate on: FER2013 .csv, image folders, photos, videos")
    p.add_argument("--val", type=Path, nargs="+", default=[], metavar="PATH",
                   help="validation faces; without it part of every --calib source is held out")
    p.add_argument("--holdout", type=fraction, default=0.5,
                   help="share of each calibration source held out for validation (default 0.5)")
    p.add_argument("--crops", action="store_true",
                   help="images are already face crops: resize them, do not detect faces")
    p.add_argument("--augment", action="store_true",
                   help="also calibrate on mirrored and slightly shifted faces")
    p.add_argument("--min-calib", type=int, default=DEFAULT_MIN_CALIB,
                   help=f"fewest calibration faces accepted (default {DEFAULT_MIN_CALIB})")
    p.add_argument("--max-calib", type=int, default=DEFAULT_MAX_CALIB,
                   help=f"most calibration faces used (default {DEFAULT_MAX_CALIB})")
    p.add_argument("--max-val", type=int, default=DEFAULT_MAX_VAL,
                   help=f"most validation faces compared (default {DEFAULT_MAX_VAL})")
    p.add_argument("--per-tensor", action="store_true", help="int8 with per-tensor instead of per-channel weights")
    p.add_argument("--report", type=Path, default=None, help="validation report JSON (default <out stem>.report.json)")
    p.add_argument("--min-agreement", type=fraction, default=None,
                   help="exit 1 when top-1 agreement with the float model is below this (e.g. 0.98)")
    p.add_argument("--latency-runs", type=int, default=300, help="timed single-face calls per model")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def request_from_args(args: argparse.Namespace) -> Request:
    return Request(
        keras=args.keras, out=args.out, quant=args.quant, labels=args.labels, color=args.color, mean=args.mean,
        std=args.std, face_margin=args.face_margin, calib=tuple(args.calib), val=tuple(args.val),
        holdout=args.holdout, augment=args.augment, crops=args.crops, min_calib=args.min_calib,
        max_calib=args.max_calib, max_val=args.max_val, per_channel=not args.per_tensor,
        report=args.report, latency_runs=args.latency_runs,
    )


def agreement_ok(report: dict, min_agreement: float | None) -> bool:
    if min_agreement is None:
        return True
    agreement = report["validation"]["converted"]["top1_agreement"]
    if agreement is None:
        log.error("--min-agreement %.3f: no validation faces to measure agreement on", min_agreement)
        return False
    if agreement < min_agreement:
        log.error("top-1 agreement %.4f is below --min-agreement %.4f", agreement, min_agreement)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        request = request_from_args(args)
        report = build(request).report
    except (ConvertError, ModelError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(format_report(report))
    print(f"report: {request.report_path}")
    return 0 if agreement_ok(report, args.min_agreement) else EXIT_BELOW_AGREEMENT


if __name__ == "__main__":
    sys.exit(main())
