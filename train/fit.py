"""Training: batches augmented on the fly, Adam with callbacks, resumable fit, and the run's output files."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.model import ModelInfo, save_model_info
from train import TrainError
from train.augment import augment_batch
from train.config import (BEST_WEIGHTS_FILE, CURVES_FILE, DISTRIBUTION_FILE, LAST_FILE, LOG_FILE, MODEL_FILE,
                          STATE_FILE, TrainConfig, check_out_folder)
from train.data import Dataset
from train.evaluate import evaluate_split
from train.imbalance import balanced_class_weights, oversample_indices, oversampled_counts
from train.losses import CategoricalFocalLoss
from train.models import build_model
from train.report import plot_class_distribution, plot_learning_curves

log = logging.getLogger(__name__)

MONITOR = "val_accuracy"  # best checkpoint and early stopping
EVAL_BATCH = 256  # validation images per batch


class FaceBatches(keras.utils.PyDataset):
    """Training batches: shuffled (or oversampled) each epoch, augmented, normalised as the model expects.

    The order and augmentation of epoch e derive from (seed, e) alone, so a resumed run sees the same
    batches an uninterrupted one would have.
    """

    def __init__(self, data: Dataset, info: ModelInfo, config: TrainConfig, epoch: int = 0) -> None:
        super().__init__()
        self.data, self.info, self.config = data, info, config
        self.targets = data.targets()
        self.weights = (balanced_class_weights(data.counts()).astype(np.float32)
                        if config.balance == "class-weights" else None)
        self.epoch = epoch
        self.order = self.epoch_order(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, epoch])
        if self.config.balance == "oversample":
            return oversample_indices(self.data.labels, len(self.data.classes), rng)
        return rng.permutation(len(self.data))

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.config.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        batch = self.order[index * self.config.batch_size:(index + 1) * self.config.batch_size]
        pixels = self.data.images[batch]
        if self.config.augment is not None:
            rng = np.random.default_rng([self.config.seed, self.epoch, index])
            pixels = augment_batch(pixels, rng, self.config.augment)
        x = self.info.normalize(pixels)[..., None]
        if self.weights is None:
            return x, self.targets[batch]
        return x, self.targets[batch], self.weights[self.data.labels[batch]]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.epoch_order(self.epoch)


class RunState(keras.callbacks.Callback):
    """Writes state.json after every epoch: epochs done, best validation accuracy, and the run's identity."""

    def __init__(self, path: Path, identity: dict[str, Any], best: float | None, best_epoch: int | None) -> None:
        super().__init__()
        self.path, self.identity = path, identity
        self.best, self.best_epoch = best, best_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(MONITOR)
        if current is not None and (self.best is None or current > self.best):
            self.best, self.best_epoch = float(current), epoch
        state = {**self.identity, "epochs_done": epoch + 1, "best_val_accuracy": self.best,
                 "best_epoch": self.best_epoch}
        self.path.write_text(json.dumps(state, indent=2) + "\n")


def configure_devices() -> str:
    """Use a GPU when TensorFlow sees one (memory grown as needed); say which device trains."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised: growth cannot change any more
            log.debug("memory growth unchanged on %s: %s", gpu.name, exc)
    device = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"
    log.info("training on %s", device)
    return device


def compile_model(model: Any, config: TrainConfig) -> None:
    loss = (CategoricalFocalLoss(gamma=config.focal_gamma) if config.loss == "focal"
            else keras.losses.CategoricalCrossentropy())
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate), loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def run_identity(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What a resumed run must share with the run it resumes."""
    return {"arch": config.arch, "labels": list(data.classes), "side": data.side, "loss": config.loss,
            "soft_labels": data.soft is not None, "source": data.source}


def start_state(out: Path, identity: dict[str, Any], resume: bool) -> tuple[int, float | None, int | None]:
    """(first epoch, best validation accuracy so far, its epoch) for a new or resumed run in ``out``."""
    check_out_folder(out, resume)
    if not resume:
        return 0, None, None
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text())
    for key, value in identity.items():
        if state.get(key) != value:
            raise TrainError(f"--resume: {out} was trained with {key}={state.get(key)!r}, "
                             f"this run has {value!r}")
    return int(state["epochs_done"]), state.get("best_val_accuracy"), state.get("best_epoch")


def callbacks(out: Path, config: TrainConfig, identity: dict[str, Any], resumed: bool,
              best: float | None, best_epoch: int | None) -> list[Any]:
    return [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                          patience=config.lr_patience, min_lr=config.min_lr, verbose=1),
        keras.callbacks.ModelCheckpoint(out / BEST_WEIGHTS_FILE, monitor=MONITOR, mode="max",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=best),
        keras.callbacks.ModelCheckpoint(out / LAST_FILE),
        RunState(out / STATE_FILE, identity, best, best_epoch),
        # on resume the best so far is the baseline; the patience count starts again
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience, baseline=best,
                                      verbose=1),
        keras.callbacks.CSVLogger(out / LOG_FILE, append=resumed),
    ]


def model_info(data: Dataset, config: TrainConfig) -> ModelInfo:
    """The model's self-description: x / 255 normalisation (mean 0, std 1), grayscale, labels in order."""
    return ModelInfo(labels=data.classes, input_height=data.side, input_width=data.side, color="grayscale",
                     mean=0.0, std=1.0, face_margin=config.face_margin)


def check_splits(data: Dataset, config: TrainConfig) -> tuple[Dataset, Dataset, Dataset]:
    parts = tuple(data.split(name) for name in ("Training", config.val_split, config.eval_split))
    for name, part in zip(("Training", config.val_split, config.eval_split), parts):
        if len(part) == 0:
            raise TrainError(f"{data.source}: the {name} split is empty")
    if np.count_nonzero(parts[0].counts()) < 2:
        raise TrainError(f"{data.source}: the Training split holds fewer than 2 classes")
    return parts  # type: ignore[return-value]


def train(data: Dataset, config: TrainConfig, out: str | Path, resume: bool = False,
          verbose: str | int = "auto") -> dict[str, Any]:
    """Train on ``data``, keep the best epoch by validation accuracy, evaluate it, write everything to ``out``.

    Returns the evaluation metrics (also in ``out/metrics.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set, test_set = check_splits(data, config)
    identity = run_identity(config, data)
    first_epoch, best, best_epoch = start_state(out, identity, resume)
    keras.utils.set_random_seed(config.seed + first_epoch)
    device = configure_devices()
    info = model_info(data, config)
    log.info("splits: %d training, %d %s (validation), %d %s (evaluation)", len(train_set), len(val_set),
             config.val_split, len(test_set), config.eval_split)
    model = load_or_build_model(out, config, data, resume)
    write_distribution(train_set, config, out)
    if first_epoch < config.epochs:
        model.fit(FaceBatches(train_set, info, config, first_epoch), shuffle=False,
                  validation_data=(info.normalize(val_set.images)[..., None], val_set.targets()),
                  validation_batch_size=EVAL_BATCH, epochs=config.epochs, initial_epoch=first_epoch,
                  callbacks=callbacks(out, config, identity, resume, best, best_epoch), verbose=verbose)
    else:
        log.info("%s already trained %d epochs; evaluating", out, first_epoch)
    return finish(model, test_set, info, config, out, device)


def load_or_build_model(out: Path, config: TrainConfig, data: Dataset, resume: bool) -> Any:
    """The last epoch's model and optimizer when resuming, else a fresh compiled model."""
    if resume:
        log.info("resuming from %s", out / LAST_FILE)
        return keras.models.load_model(out / LAST_FILE)
    model = build_model(config.arch, len(data.classes), data.side)
    compile_model(model, config)
    return model


def finish(model: Any, test_set: Dataset, info: ModelInfo, config: TrainConfig, out: Path,
           device: str) -> dict[str, Any]:
    """Best weights -> learning curves, evaluation report, model.keras and model.json."""
    state = json.loads((out / STATE_FILE).read_text())
    if (out / BEST_WEIGHTS_FILE).is_file():
        model.load_weights(out / BEST_WEIGHTS_FILE)
    plot_learning_curves(out / LOG_FILE, out / CURVES_FILE)
    metrics = evaluate_split(model, test_set, info, config.eval_split, out)
    provenance = {"dataset": test_set.source, "arch": config.arch, "epochs": state["epochs_done"],
                  "best_epoch": (state["best_epoch"] or 0) + 1, "accuracy": round(metrics["accuracy"], 4),
                  "macro_f1": round(metrics["macro_f1"], 4), "eval_split": config.eval_split,
                  "val_split": config.val_split, "val_accuracy": state["best_val_accuracy"],
                  "loss": config.loss, "balance": config.balance, "soft_labels": state["soft_labels"],
                  "augment": config.augment is not None, "seed": config.seed, "device": device,
                  "keras": keras.__version__}
    save_inference_model(model, out / MODEL_FILE)
    save_model_info(replace(info, provenance=provenance), out / MODEL_FILE)
    return metrics


def write_distribution(train_set: Dataset, config: TrainConfig, out: Path) -> None:
    counts = train_set.counts()
    after = oversampled_counts(counts) if config.balance == "oversample" else None
    plot_class_distribution(train_set.classes, counts, after, out / DISTRIBUTION_FILE)


def save_inference_model(model: Any, path: Path) -> Path:
    """Save the model without optimizer or loss, so loading it needs nothing from train/."""
    inference = keras.models.clone_model(model)
    inference.set_weights(model.get_weights())
    inference.save(path)
    log.info("wrote %s", path)
    return path
