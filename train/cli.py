"""Command line: `python -m train --data fer2013.csv [--ferplus fer2013new.csv] [--recipe NAME] --out DIR`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from convert import ConvertError
from edge.config import ConfigError, load_config
from edge.detect import DetectorError
from edge.model import ModelError
from edge.signals import StopReason
from train import TrainError
from train.augment import AugmentConfig
from train.config import (LOSSES, MODEL_FILE, MODEL_INFO_FILE, OPTIMIZERS, PLATEAU_MONITORS, PRECISIONS, SCHEDULES,
                          TrainConfig, check_out_folder)
from train.data import CLASS_SETS, FERPLUS_VOTES, SPLITS, load_dataset
from train.imbalance import BALANCE_MODES
from train.models import ARCHITECTURES, INPUT_SIDES
from train.recipes import RECIPES, recipe_values
from train.tta import DEFAULT_CROP_FRACTION

log = logging.getLogger("train")

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # missing file, malformed row, bad option, unresumable output folder
# Ctrl-C exits with StopReason.INTERRUPT.exit_code (130); --resume continues from the last finished epoch
# flags a recipe may set: argparse leaves them None unless given, so an explicit flag wins
CONFIG_FLAGS = ("arch", "width", "epochs", "batch_size", "learning_rate", "optimizer", "momentum", "nesterov",
                "weight_decay", "schedule", "plateau_monitor", "lr_patience", "lr_factor", "warmup_epochs",
                "patience", "fine_tune_epochs", "fine_tune_lr", "balance", "loss", "focal_gamma",
                "label_smoothing", "ema", "precision", "seed", "eval_split", "face_margin", "tta_crop")
AUGMENT_FLAGS = ("shift", "rotation", "zoom", "crop_scale", "erase")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True,
                      help="Kaggle fer2013.csv, or an image-folder root ROOT/{train,val,test}/<class>/")
    data.add_argument("--ferplus", type=Path, help="Microsoft FER+ fer2013new.csv: relabel by the votes")
    data.add_argument("--classes", choices=tuple(CLASS_SETS), default="7",
                      help="7 = FER2013 classes (FER+ contempt folded into neutral), 8 = with contempt "
                           "(needs FER+), 5 = angry/happy/sad/surprise/neutral (default 7)")
    data.add_argument("--soft-labels", action="store_true", help="train on FER+ vote distributions")
    data.add_argument("--ferplus-vote", choices=FERPLUS_VOTES, default="plurality",
                      help="FER+ label: most votes (the seeds' choice), or more than half of the votes")
    data.add_argument("--eval-split", choices=SPLITS[1:],
                      help="split to report on (default PrivateTest); the other test split selects the best epoch")


def add_model_flags(parser: argparse.ArgumentParser, arch_flag: str) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(arch_flag, dest="arch", choices=tuple(ARCHITECTURES),
                       help="network (default mini_xception, or the recipe's; see train/README.md)")
    model.add_argument("--width", type=float, help="filter/unit multiplier of vgg_khaireddin (default 1)")
    model.add_argument("--input-size", type=int, choices=INPUT_SIDES,
                       help="input side in pixels (default: the architecture's, 40, 48 or 64)")
    model.add_argument("--face-margin", type=float, help="face_margin recorded in model.json (default 0: "
                                                          "FER2013 crops are tight)")


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    fit = parser.add_argument_group("training (a recipe sets several at once; a flag given here wins)")
    fit.add_argument("--recipe", choices=tuple(RECIPES), default="seeds",
                     help="seeds: Adam, plateau on val loss, early stopping (default); khaireddin: the paper's "
                          "VGG, SGD Nesterov, plateau on val accuracy, crops and erasing, fine-tune")
    fit.add_argument("--epochs", type=int, help="epochs of the main run, counting resumed ones (default 50)")
    fit.add_argument("--batch-size", type=int, help="(default 64)")
    fit.add_argument("--lr", dest="learning_rate", type=float, help="initial learning rate (default 0.001)")
    fit.add_argument("--optimizer", choices=OPTIMIZERS, help="(default adam)")
    fit.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    fit.add_argument("--no-nesterov", dest="nesterov", action="store_false", default=None,
                     help="SGD with classical instead of Nesterov momentum")
    fit.add_argument("--weight-decay", type=float, help="decoupled weight decay per step (default 0)")
    fit.add_argument("--schedule", choices=SCHEDULES,
                     help="plateau: cut the learning rate when --plateau-monitor stalls (default); cosine: "
                          "cosine decay after --warmup-epochs of linear warm-up; constant")
    fit.add_argument("--plateau-monitor", choices=PLATEAU_MONITORS, help="(default val_loss)")
    fit.add_argument("--lr-patience", type=int, help="plateau epochs before a cut (default 3)")
    fit.add_argument("--lr-factor", type=float, help="plateau cut factor (default 0.5)")
    fit.add_argument("--warmup-epochs", type=int, help="cosine warm-up epochs (default 0)")
    fit.add_argument("--patience", type=int,
                     help="epochs without a better validation accuracy before stopping; 0 = never (default 10)")
    fit.add_argument("--fine-tune-epochs", type=int,
                     help="after the main run, continue from its best epoch with a cosine decay (default 0)")
    fit.add_argument("--fine-tune-lr", type=float, help="fine-tune starting learning rate (default 0.001)")
    fit.add_argument("--balance", choices=BALANCE_MODES, help="class-imbalance handling (default none)")
    fit.add_argument("--loss", choices=LOSSES, help="(default crossentropy)")
    fit.add_argument("--focal-gamma", type=float, help="focal loss focusing parameter (default 2)")
    fit.add_argument("--label-smoothing", type=float, help="(default 0)")
    fit.add_argument("--ema", type=float, help="momentum of an exponential moving average of the weights, "
                                               "e.g. 0.999; the averaged weights are evaluated and saved (default 0: off)")
    fit.add_argument("--precision", choices=PRECISIONS,
                     help="auto: mixed float16 when TensorFlow sees a GPU, else float32 (default auto)")
    fit.add_argument("--seed", type=int, help="seeds weights, batch order and augmentation (default 0)")
    augment = parser.add_argument_group("augmentation (on the fly)")
    augment.add_argument("--no-augment", action="store_true", help="train without augmentation")
    augment.add_argument("--shift", type=float, help="largest shift, fraction of the side (default 0.1)")
    augment.add_argument("--rotation", type=float, help="largest rotation, degrees (default 10)")
    augment.add_argument("--zoom", type=float, help="zoom range 1 +- this (default 0.1)")
    augment.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                         help="random resized crop: area range, fraction of the face (default 1 1: off)")
    augment.add_argument("--erase", type=float, help="random-erasing probability (default 0)")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--tta-crop", type=float,
                            help=f"ten-crop averaging: crop side, fraction of the face (default {DEFAULT_CROP_FRACTION})")
    add_runtime_flags(evaluation)


def add_runtime_flags(group: Any) -> None:
    group.add_argument("--runtime-eval", type=Path, metavar="IMAGES",
                       help="also score the model as the device runs it: converted to int8, then these labelled "
                            "images (ROOT/<label>/ folders, a path,label[,box] CSV, or a FER2013 CSV) through the "
                            "runtime's detector, crop and classifier (python -m edge.evaluate's path)")
    group.add_argument("--runtime-calib", type=Path, nargs="+", metavar="PATH",
                       help="faces that calibrate the int8 model (default: --data; an image folder's train/)")
    group.add_argument("--runtime-calib-crops", action="store_true",
                       help="the calibration images are face crops already (convert --crops)")
    group.add_argument("--runtime-config", type=Path, help="config.toml whose [detector] finds the faces")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder for the model, log and report")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an expression CNN on FER2013 / FER+ / an image folder and evaluate it on the "
                    "official test split.")
    add_data_flags(parser)
    add_model_flags(parser, "--arch")
    add_training_flags(parser)
    add_run_flags(parser)
    return parser.parse_args(argv)


def augment_config(args: argparse.Namespace, base: AugmentConfig | None) -> AugmentConfig | None:
    given = {name: getattr(args, name) for name in AUGMENT_FLAGS if getattr(args, name) is not None}
    if args.no_augment:
        if given:
            raise TrainError(f"--no-augment cannot be combined with --{next(iter(given)).replace('_', '-')}")
        return None
    if "crop_scale" in given:
        given["crop_scale"] = tuple(given["crop_scale"])
    try:
        return replace(base or AugmentConfig(), **given)
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def train_config(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    """TrainConfig's defaults, then the recipe's values, then the flags given; ``fixed`` last."""
    values = recipe_values(args.recipe)
    values.update({name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None})
    values["augment"] = augment_config(args, values.get("augment"))
    return TrainConfig(**{**values, **fixed})


def runtime_request(args: argparse.Namespace, eval_split: str) -> Any:
    """What --runtime-eval asks for, checked before TensorFlow loads; None without it."""
    if args.runtime_eval is None:
        return None
    from edge.datasets import csv_header
    from train.data import split_folders
    from train.runtime import RuntimeEval

    images = args.runtime_eval
    calib = args.runtime_calib or [split_folders(args.data)["Training"] if args.data.is_dir() else args.data]
    fer_csv = images.is_file() and images.suffix.lower() == ".csv" and "pixels" in csv_header(images)
    detector = load_config(args.runtime_config).detector if args.runtime_config else None
    request = RuntimeEval(images, tuple(calib), args.runtime_calib_crops, detector, eval_split if fer_csv else None)
    request.check()
    return request


def with_runtime(metrics: dict[str, Any], request: Any, keras_path: Path, out: Path) -> dict[str, Any]:
    """The metrics plus the runtime path's figures (also written to out/metrics.json); as is without a request."""
    if request is None:
        return metrics
    from train.evaluate import METRICS_FILE
    from train.report import write_json
    from train.runtime import runtime_report

    metrics["runtime"] = runtime_report(keras_path, request, out)
    write_json(out / METRICS_FILE, metrics)
    return metrics


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = train_config(args)
    check_out_folder(args.out, args.resume)
    runtime = runtime_request(args, config.eval_split)
    data = load_data(args, config)
    from train.fit import train  # TensorFlow loads here, after the input has been checked

    metrics = train(data, config, args.out, resume=args.resume, verbose=2 if args.quiet else "auto")
    return with_runtime(metrics, runtime, args.out / MODEL_FILE, args.out)


def load_data(args: argparse.Namespace, config: TrainConfig) -> Any:
    if args.ferplus is not None and not args.ferplus.is_file():
        raise TrainError(f"file not found: {args.ferplus}")
    side = args.input_size or ARCHITECTURES[config.arch].side
    data = load_dataset(args.data, args.ferplus, args.classes, side, args.soft_labels, args.ferplus_vote)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    return data


def main_with(run_fn: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace,
              trained: bool = True) -> int:
    """Run, print the report, map user mistakes to one line on stderr and exit code 2, Ctrl-C to 130.

    ``trained``: the run wrote a model into ``args.out`` (training, distilling), which the report
    names and ``--resume`` continues; an evaluation prints its metrics only.
    """
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = run_fn(args)
    except (TrainError, ModelError, ConvertError, DetectorError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        resume = f": continue with the same command plus --resume (out: {args.out})" if trained else ""
        print(f"interrupted{resume}", file=sys.stderr)
        return StopReason.INTERRUPT.exit_code
    from train.evaluate import summary

    print(summary(metrics))
    if trained:
        print(f"model: {args.out / MODEL_FILE} (+ {MODEL_INFO_FILE}); report: {args.out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
