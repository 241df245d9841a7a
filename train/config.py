"""Training settings and the layout of a run folder, checked before TensorFlow loads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from train import TrainError
from train.augment import AugmentConfig
from train.data import SPLITS
from train.imbalance import BALANCE_MODES
from train.models import ARCHITECTURES

log = logging.getLogger(__name__)

LOSSES = ("crossentropy", "focal")
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
class TrainConfig:
    """How to train; `python -m train` has a flag for each field."""

    arch: str = "mini_xception"
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    balance: str = "none"  # one of BALANCE_MODES
    loss: str = "crossentropy"  # one of LOSSES
    focal_gamma: float = 2.0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    patience: int = 10  # epochs without a better validation accuracy before stopping
    lr_patience: int = 3  # epochs without a lower validation loss before the learning rate drops
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    seed: int = 0
    eval_split: str = "PrivateTest"
    face_margin: float = 0.0  # recorded in model.json: FER2013 faces are tightly framed

    def __post_init__(self) -> None:
        choices = {"arch": tuple(ARCHITECTURES), "balance": BALANCE_MODES, "loss": LOSSES,
                   "eval_split": SPLITS[1:]}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "patience", "lr_patience"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise TrainError(f"learning rate must be in (0, 1), got {self.learning_rate}")
        if not 0 < self.lr_factor < 1:
            raise TrainError(f"learning-rate factor must be in (0, 1), got {self.lr_factor}")
        if self.focal_gamma < 0:
            raise TrainError(f"focal gamma must be >= 0, got {self.focal_gamma}")
        if not 0.0 <= self.face_margin <= 1.0:
            raise TrainError(f"face margin must be in [0, 1], got {self.face_margin}")

    @property
    def val_split(self) -> str:
        """Model selection runs on the official test split that is not the evaluation split."""
        return "PrivateTest" if self.eval_split == "PublicTest" else "PublicTest"


def check_out_folder(out: Path, resume: bool) -> None:
    """A new run needs a folder without a run in it; --resume needs one with a run."""
    has_run = (out / STATE_FILE).is_file() and (out / LAST_FILE).is_file()
    if resume and not has_run:
        raise TrainError(f"--resume: {out} has no run to resume ({STATE_FILE} or {LAST_FILE} missing)")
    if not resume and ((out / STATE_FILE).exists() or (out / LAST_FILE).exists()):
        raise TrainError(f"{out} already holds a training run: pass --resume to continue it, "
                         "or choose another --out")
