"""Command line: `python -m train --data fer2013.csv [--ferplus fer2013new.csv] --arch NAME --out DIR`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from edge.model import ModelError
from train import TrainError
from train.augment import AugmentConfig
from train.config import LOSSES, MODEL_FILE, MODEL_INFO_FILE, TrainConfig, check_out_folder
from train.data import CLASS_SETS, FERPLUS_VOTES, SPLITS, load_dataset
from train.imbalance import BALANCE_MODES
from train.models import ARCHITECTURES, INPUT_SIDES

log = logging.getLogger("train")

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # missing file, malformed row, bad option, unresumable output folder
EXIT_INTERRUPTED = 130  # Ctrl-C; --resume continues from the last finished epoch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an expression CNN on FER2013 / FER+ / an image folder and evaluate it on the "
                    "official test split.")
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
    data.add_argument("--eval-split", choices=SPLITS[1:], default="PrivateTest",
                      help="split to report on; the other test split selects the best epoch")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=tuple(ARCHITECTURES), default="mini_xception",
                       help="network (default mini_xception; see train/README.md)")
    model.add_argument("--input-size", type=int, choices=INPUT_SIDES,
                       help="input side in pixels (default: the architecture's, 48 or 64)")
    model.add_argument("--face-margin", type=float, default=0.0,
                       help="face_margin recorded in model.json (0: FER2013 crops are tight)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=50, help="epochs in all, counting resumed ones (default 50)")
    fit.add_argument("--batch-size", type=int, default=64, help="(default 64)")
    fit.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate (default 0.001)")
    fit.add_argument("--patience", type=int, default=10,
                     help="epochs without a better validation accuracy before stopping (default 10)")
    fit.add_argument("--balance", choices=BALANCE_MODES, default="none",
                     help="class-imbalance handling (default none)")
    fit.add_argument("--loss", choices=LOSSES, default="crossentropy", help="(default crossentropy)")
    fit.add_argument("--focal-gamma", type=float, default=2.0, help="focal loss focusing parameter (default 2)")
    fit.add_argument("--no-augment", action="store_true", help="train without on-the-fly augmentation")
    fit.add_argument("--seed", type=int, default=0, help="seeds weights, batch order and augmentation (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="run folder for the model, log and report")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                       balance=args.balance, loss=args.loss, focal_gamma=args.focal_gamma,
                       augment=None if args.no_augment else AugmentConfig(), patience=args.patience,
                       seed=args.seed, eval_split=args.eval_split, face_margin=args.face_margin)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = train_config(args)
    check_out_folder(args.out, args.resume)
    if args.ferplus is not None and not args.ferplus.is_file():
        raise TrainError(f"file not found: {args.ferplus}")
    side = args.input_size or ARCHITECTURES[args.arch].side
    data = load_dataset(args.data, args.ferplus, args.classes, side, args.soft_labels, args.ferplus_vote)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    from train.fit import train  # TensorFlow loads here, after the input has been checked

    return train(data, config, args.out, resume=args.resume, verbose=2 if args.quiet else "auto")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = run(args)
    except (TrainError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"interrupted: continue with the same command plus --resume (out: {args.out})", file=sys.stderr)
        return EXIT_INTERRUPTED
    from train.evaluate import summary

    print(summary(metrics))
    print(f"model: {args.out / MODEL_FILE} (+ {MODEL_INFO_FILE}); report: {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
