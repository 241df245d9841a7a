"""Training settings and the layout of a run folder, checked before TensorFlow loads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge.model import ModelInfo
from train import TrainError
from train.augment import AugmentConfig
from train.data import SPLITS
from train.imbalance import BALANCE_MODES
from train.models import ARCHITECTURES, check_width
from train.tta import DEFAULT_CROP_FRACTION

log = logging.getLogger(__name__)

LOSSES = ("crossentropy", "focal")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("plateau", "cosine", "constant")
PLATEAU_MONITORS = ("val_loss", "val_accuracy")
PRECISIONS = ("auto", "float32", "mixed")  # auto: mixed float16 when TensorFlow sees a GPU
# files of a run folder
MODEL_FILE = "model.keras"  # the best epoch's model, uncompiled: what convert/ and train.evaluate read
MODEL_INFO_FILE = "model.json"  # its self-description (edge.model.ModelInfo)
LAST_FILE = "last.keras"  # model and optimizer after the latest epoch, for --resume
BEST_WEIGHTS_FILE = "best.weights.h5"
STATE_FILE = "state.json"  # epochs done and best validation accuracy, for --resume
LOG_FILE = "train_log.csv"
CURVES_FILE = "learning_curves.png"
DISTRIBUTION_FILE = "class_distribution.png"


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): the student learns the teacher's softened outputs."""

    teacher: Path  # a model.keras written by `python -m train`, with its model.json
    temperature: float = 4.0  # softens both distributions; T^2 rescales the soft term's gradients
    alpha: float = 0.9  # weight of the soft (teacher) term; 1 - alpha weighs the hard labels
    unlabelled: tuple[str, ...] = ()  # sources of the unlabelled faces, for the record

    def __post_init__(self) -> None:
        if not 1.0 <= self.temperature <= 50.0:
            raise TrainError(f"distillation temperature must be in [1, 50], got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise TrainError(f"distillation alpha (soft-loss weight) must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; `python -m train` has a flag for each field and `--recipe` sets several at once."""

    arch: str = "mini_xception"
    width: float = 1.0  # filter and unit multiplier (vgg_khaireddin only)
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # one of OPTIMIZERS
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 0.0  # decoupled, per step: w -= learning_rate * weight_decay * w
    schedule: str = "plateau"  # one of SCHEDULES
    plateau_monitor: str = "val_loss"  # the seeds watched the loss; the paper watches accuracy
    lr_patience: int = 3  # epochs without improvement of plateau_monitor before the learning rate drops
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    warmup_epochs: int = 0  # cosine: linear warm-up from 0 over these epochs
    balance: str = "none"  # one of BALANCE_MODES
    loss: str = "crossentropy"  # one of LOSSES
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    ema: float = 0.0  # momentum of the exponential moving average of the weights; 0 = off
    precision: str = "auto"  # one of PRECISIONS
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    patience: int = 10  # epochs without a better validation accuracy before stopping; 0 = never stop
    fine_tune_epochs: int = 0  # after the main run: continue from its best epoch with a cosine decay
    fine_tune_lr: float = 1e-3  # ... starting from this learning rate, down to 0
    tta_crop: float = DEFAULT_CROP_FRACTION  # ten-crop evaluation: crop side, fraction of the face side
    seed: int = 0
    eval_split: str = "PrivateTest"
    face_margin: float = 0.0  # recorded in model.json: FER2013 faces are tightly framed
    recipe: str = "seeds"  # the preset the run started from (train.recipes), for the record
    distill: DistillConfig | None = None

    def __post_init__(self) -> None:
        choices = {"arch": tuple(ARCHITECTURES), "balance": BALANCE_MODES, "loss": LOSSES,
                   "eval_split": SPLITS[1:], "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
                   "plateau_monitor": PLATEAU_MONITORS, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "lr_patience"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("patience", "warmup_epochs", "fine_tune_epochs"):
            if getattr(self, name) < 0:
                raise TrainError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise TrainError(f"warm-up ({self.warmup_epochs} epochs) must be shorter than the run "
                             f"({self.epochs} epochs)")
        for name in ("learning_rate", "fine_tune_lr"):
            if not 0 < getattr(self, name) < 1:
                raise TrainError(f"{name.replace('_', ' ')} must be in (0, 1), got {getattr(self, name)}")
        if not 0 < self.lr_factor < 1:
            raise TrainError(f"learning-rate factor must be in (0, 1), got {self.lr_factor}")
        for name in ("momentum", "ema"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.weight_decay < 0.1:
            raise TrainError(f"weight decay must be in [0, 0.1), got {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TrainError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.focal_gamma < 0:
            raise TrainError(f"focal gamma must be >= 0, got {self.focal_gamma}")
        if not 0.5 <= self.tta_crop <= 1.0:
            raise TrainError(f"ten-crop fraction must be in [0.5, 1], got {self.tta_crop}")
        if not 0.0 <= self.face_margin <= 1.0:
            raise TrainError(f"face margin must be in [0, 1], got {self.face_margin}")
        try:
            check_width(self.arch, self.width)
        except ValueError as exc:
            raise TrainError(str(exc)) from None

    @property
    def val_split(self) -> str:
        """Model selection runs on the official test split that is not the evaluation split."""
        return "PrivateTest" if self.eval_split == "PublicTest" else "PublicTest"

    @property
    def total_epochs(self) -> int:
        """At most: the main run and the fine-tune (early stopping may end the main run sooner)."""
        return self.epochs + self.fine_tune_epochs


def network_info(labels: tuple[str, ...], side: int, face_margin: float) -> ModelInfo:
    """What every trained network is: x / 255 normalisation (mean 0, std 1), grayscale, labels in order."""
    return ModelInfo(labels=tuple(labels), input_height=side, input_width=side, color="gray", mean=0.0,
                     std=1.0, face_margin=face_margin)


def check_out_folder(out: Path, resume: bool) -> None:
    """A new run needs a folder without a run in it; --resume needs one with a run."""
    has_run = (out / STATE_FILE).is_file() and (out / LAST_FILE).is_file()
    if resume and not has_run:
        raise TrainError(f"--resume: {out} has no run to resume ({STATE_FILE} or {LAST_FILE} missing)")
    if not resume and ((out / STATE_FILE).exists() or (out / LAST_FILE).exists()):
        raise TrainError(f"{out} already holds a training run: pass --resume to continue it, "
                         "or choose another --out")
