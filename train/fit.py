"""Training: batches augmented on the fly, the optimizer and schedule, resumable fit and fine-tune, output files."""

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

from convert.build import file_sha256
from edge.model import ModelInfo, load_model_info, save_model_info
from train import TrainError
from train.augment import augment_batch
from train.config import (BEST_WEIGHTS_FILE, CURVES_FILE, DISTRIBUTION_FILE, LAST_FILE, LOG_FILE, MODEL_FILE,
                          STATE_FILE, TrainConfig, check_out_folder, network_info)
from train.data import Dataset, resize_images
from train.distiller import Distiller
from train.evaluate import evaluate_split, load_keras_model, predict
from train.imbalance import balanced_class_weights, oversample_indices, oversampled_counts
from train.losses import classification_loss
from train.metrics import evaluate_predictions
from train.models import build_model
from train.report import plot_class_distribution, plot_learning_curves

log = logging.getLogger(__name__)

MONITOR = "val_accuracy"  # best checkpoint and early stopping
EVAL_BATCH = 256  # validation images per batch
MAX_STUDENT_PARAMS = 1_500_000  # an edge model: what a Raspberry Pi classifies per face in a few ms


class FaceBatches(keras.utils.PyDataset):
    """Training batches: shuffled (or oversampled) each epoch, augmented, normalised as the model expects.

    Unlabelled faces (distillation) join every epoch with weight 0 for the label term. The order and
    augmentation of epoch e derive from (seed, e) alone, so a resumed run sees the same batches an
    uninterrupted one would have.
    """

    def __init__(self, data: Dataset, info: ModelInfo, config: TrainConfig, epoch: int = 0,
                 unlabelled: np.ndarray | None = None) -> None:
        super().__init__()
        self.data, self.info, self.config = data, info, config
        extra = 0 if unlabelled is None else len(unlabelled)
        self.labelled = len(data)
        self.images = data.images if not extra else np.concatenate([data.images, unlabelled])
        targets = data.targets()
        self.targets = targets if not extra else np.concatenate([targets, np.zeros((extra, targets.shape[1]),
                                                                                   np.float32)])
        self.weights = None
        if config.balance == "class-weights" or extra:
            labelled = (balanced_class_weights(data.counts())[data.labels] if config.balance == "class-weights"
                        else np.ones(len(data)))
            self.weights = np.concatenate([labelled, np.zeros(extra)]).astype(np.float32)
        self.epoch = epoch
        self.order = self.epoch_order(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, epoch])
        if self.config.balance == "oversample":
            order = oversample_indices(self.data.labels, len(self.data.classes), rng)
        else:
            order = rng.permutation(self.labelled)
        if len(self.images) > self.labelled:
            order = np.concatenate([order, np.arange(self.labelled, len(self.images))])
            rng.shuffle(order)
        return order

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.config.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        batch = self.order[index * self.config.batch_size:(index + 1) * self.config.batch_size]
        pixels = self.images[batch]
        if self.config.augment is not None:
            rng = np.random.default_rng([self.config.seed, self.epoch, index])
            pixels = augment_batch(pixels, rng, self.config.augment)
        x = self.info.normalize(pixels)[..., None]
        if self.weights is None:
            return x, self.targets[batch]
        return x, self.targets[batch], self.weights[batch]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.epoch_order(self.epoch)


class RunState(keras.callbacks.Callback):
    """Writes state.json after every epoch: epochs done, best validation accuracy, and the run's identity."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        super().__init__()
        self.path, self.state = path, state

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(MONITOR)
        best = self.state.get("best_val_accuracy")
        if current is not None and (best is None or current > best):
            self.state.update(best_val_accuracy=float(current), best_epoch=epoch)
        self.state["epochs_done"] = epoch + 1
        write_state(self.path, self.state)


class LearningRateLog(keras.callbacks.Callback):
    """Puts the optimizer's current learning rate (a schedule's value too) into the epoch's logs."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.write_text(json.dumps(state, indent=2) + "\n")


def precision_policy(setting: str, gpus: int) -> str:
    """The Keras dtype policy: mixed float16 on a GPU when ``auto``; ``mixed`` without a GPU is an error."""
    if setting == "mixed" and not gpus:
        raise TrainError("--precision mixed needs a GPU, and TensorFlow sees none (use auto or float32)")
    return "mixed_float16" if setting == "mixed" or (setting == "auto" and gpus) else "float32"


def configure_devices(precision: str) -> str:
    """Use a GPU when TensorFlow sees one (memory grown as needed), set the precision, say what trains."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised: growth cannot change any more
            log.debug("memory growth unchanged on %s: %s", gpu.name, exc)
    policy = precision_policy(precision, len(gpus))
    keras.mixed_precision.set_global_policy(policy)
    device = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"
    log.info("training on %s, precision %s", device, policy)
    return f"{device}, {policy}"


class CosineSchedule(keras.callbacks.Callback):
    """Sets the learning rate before every batch: linear warm-up from 0, then a cosine decay to ``floor``.

    A callback rather than a Keras LearningRateSchedule, so that the fine-tune continues the same
    compiled model and optimizer (no retracing) and resumed runs land on the same values.
    """

    def __init__(self, peak: float, first_epoch: int, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0,
                 floor: float = 0.0) -> None:
        super().__init__()
        self.peak, self.floor = peak, floor
        self.first_epoch, self.steps = first_epoch, steps_per_epoch
        self.warmup, self.total = warmup_epochs * steps_per_epoch, epochs * steps_per_epoch
        self.epoch = first_epoch

    def rate(self, step: int) -> float:
        """Learning rate at ``step`` batches after the schedule's first epoch began."""
        if step < self.warmup:
            return self.peak * step / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (self.peak - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate = self.rate((self.epoch - self.first_epoch) * self.steps + batch)


def make_optimizer(config: TrainConfig) -> Any:
    """Adam or SGD (Nesterov momentum), with decoupled weight decay and an EMA of the weights if asked."""
    common = {"learning_rate": config.learning_rate, "weight_decay": config.weight_decay or None, "use_ema": config.ema > 0}
    if config.ema > 0:
        common["ema_momentum"] = config.ema
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
                                    **common)
    return keras.optimizers.Adam(**common)


def compile_model(model: Any, config: TrainConfig) -> None:
    loss = None if isinstance(model, Distiller) else classification_loss(config.loss, config.focal_gamma,
                                                                         config.label_smoothing)
    model.compile(optimizer=make_optimizer(config), loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def run_identity(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What a resumed run must share with the run it resumes."""
    identity = {"arch": config.arch, "width": config.width, "labels": list(data.classes), "side": data.side,
                "loss": config.loss, "optimizer": config.optimizer, "soft_labels": data.soft is not None,
                "source": data.source}
    if config.distill is not None:
        identity["teacher_sha256"] = file_sha256(config.distill.teacher)
        identity["unlabelled"] = list(config.distill.unlabelled)
    return identity


def start_state(out: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any]:
    """The run's state: identity, epochs done, best validation accuracy and its epoch, phase."""
    check_out_folder(out, resume)
    if not resume:
        return {**identity, "epochs_done": 0, "best_val_accuracy": None, "best_epoch": None, "main_epochs": None}
    state = json.loads((out / STATE_FILE).read_text())
    state.setdefault("main_epochs", None)  # runs written before fine-tuning existed
    for key, value in identity.items():
        if state.get(key) != value:
            raise TrainError(f"--resume: {out} was trained with {key}={state.get(key)!r}, "
                             f"this run has {value!r}")
    return state


def schedule_steps(config: TrainConfig, state: dict[str, Any], steps_per_epoch: int, fine_tune: bool) -> list[Any]:
    """The learning-rate schedule: a cut on a plateau, a cosine decay, or none; the fine-tune's cosine."""
    if fine_tune:
        return [CosineSchedule(config.fine_tune_lr, state["main_epochs"], config.fine_tune_epochs, steps_per_epoch)]
    if config.schedule == "cosine":
        return [CosineSchedule(config.learning_rate, 0, config.epochs, steps_per_epoch, config.warmup_epochs,
                               floor=min(config.min_lr, config.learning_rate))]
    if config.schedule == "plateau":
        mode = "max" if config.plateau_monitor == "val_accuracy" else "min"
        return [keras.callbacks.ReduceLROnPlateau(monitor=config.plateau_monitor, mode=mode, factor=config.lr_factor,
                                                  patience=config.lr_patience, min_lr=config.min_lr, verbose=1)]
    return []


def callbacks(out: Path, config: TrainConfig, state: dict[str, Any], resumed: bool, steps_per_epoch: int,
              fine_tune: bool) -> list[Any]:
    """The epoch-end steps, in order: the last epoch is saved with the raw weights, then the EMA weights
    (if any) are swapped in for the best-epoch checkpoint, as keras.callbacks.SwapEMAWeights documents."""
    steps: list[Any] = [*schedule_steps(config, state, steps_per_epoch, fine_tune), LearningRateLog(),
                        keras.callbacks.ModelCheckpoint(out / LAST_FILE)]
    if config.ema > 0:
        steps.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    steps += [keras.callbacks.ModelCheckpoint(out / BEST_WEIGHTS_FILE, monitor=MONITOR, mode="max",
                                              save_best_only=True, save_weights_only=True,
                                              initial_value_threshold=state.get("best_val_accuracy")),
              RunState(out / STATE_FILE, state)]
    if config.patience > 0 and not fine_tune:
        # on resume the best so far is the baseline; the patience count starts again
        steps.append(keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience,
                                                   baseline=state.get("best_val_accuracy"), verbose=1))
    steps.append(keras.callbacks.CSVLogger(out / LOG_FILE, append=resumed))
    return steps


def model_info(data: Dataset, config: TrainConfig) -> ModelInfo:
    """The model's self-description (train.config.network_info) for this data and run."""
    return network_info(data.classes, data.side, config.face_margin)


def check_splits(data: Dataset, config: TrainConfig) -> tuple[Dataset, Dataset, Dataset]:
    parts = tuple(data.split(name) for name in ("Training", config.val_split, config.eval_split))
    for name, part in zip(("Training", config.val_split, config.eval_split), parts):
        if len(part) == 0:
            raise TrainError(f"{data.source}: the {name} split is empty")
    if np.count_nonzero(parts[0].counts()) < 2:
        raise TrainError(f"{data.source}: the Training split holds fewer than 2 classes")
    return parts  # type: ignore[return-value]


def train(data: Dataset, config: TrainConfig, out: str | Path, resume: bool = False,
          verbose: str | int = "auto", unlabelled: np.ndarray | None = None) -> dict[str, Any]:
    """Train on ``data`` (and, distilling, on ``unlabelled`` faces), keep the best epoch by validation
    accuracy, fine-tune if asked, evaluate, and write everything to ``out``.

    Returns the evaluation metrics (also in ``out/metrics.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set, test_set = check_splits(data, config)
    state = start_state(out, run_identity(config, data), resume)
    keras.utils.set_random_seed(config.seed + state["epochs_done"])
    device = configure_devices(config.precision)
    info = model_info(data, config)
    log.info("splits: %d training, %d %s (validation), %d %s (evaluation)%s", len(train_set), len(val_set),
             config.val_split, len(test_set), config.eval_split,
             f", {len(unlabelled)} unlabelled" if unlabelled is not None else "")
    write_distribution(train_set, config, out)
    validation = (info.normalize(val_set.images)[..., None], val_set.targets())

    steps = len(FaceBatches(train_set, info, config, 0, unlabelled))

    def fit(model: Any, first: int, last: int, fine_tune: bool) -> None:
        model.fit(FaceBatches(train_set, info, config, first, unlabelled), shuffle=False, validation_data=validation,
                  validation_batch_size=EVAL_BATCH, epochs=last, initial_epoch=first,
                  callbacks=callbacks(out, config, state, resume or first > 0, steps, fine_tune), verbose=verbose)

    model = load_or_build_model(out, config, data, resume)
    if main_run_extended(state, config):
        state["main_epochs"] = None
    if state["main_epochs"] is None:
        if state["epochs_done"] < config.epochs:
            fit(model, state["epochs_done"], config.epochs, fine_tune=False)
        state["main_epochs"] = state["epochs_done"]  # early stopping may have ended it sooner
        state["stopped_early"] = state["epochs_done"] < config.epochs
        write_state(out / STATE_FILE, state)
        if config.fine_tune_epochs:
            log.info("fine-tuning from the best epoch (%s) for %d epochs", (state["best_epoch"] or 0) + 1,
                     config.fine_tune_epochs)
            load_best_weights(model, out)  # the optimizer (and its state) carries on
    total = state["main_epochs"] + config.fine_tune_epochs
    if config.fine_tune_epochs and state["epochs_done"] < total:
        fit(model, state["epochs_done"], total, fine_tune=True)
    if state["epochs_done"] >= total and resume:
        log.info("%s holds a finished run of %d epochs; evaluating", out, state["epochs_done"])
    return finish(model, test_set, info, config, out, device)


def main_run_extended(state: dict[str, Any], config: TrainConfig) -> bool:
    """A finished main run resumed with more --epochs (and no fine-tune begun) trains on."""
    return (state["main_epochs"] is not None and not state.get("stopped_early")
            and state["epochs_done"] == state["main_epochs"] < config.epochs)


def build_trainee(config: TrainConfig, data: Dataset) -> Any:
    """The model that fits: the network itself, or, distilling, a Distiller around the student."""
    network = build_model(config.arch, len(data.classes), data.side, config.width)
    if config.distill is None:
        return network
    if network.count_params() >= MAX_STUDENT_PARAMS:
        raise TrainError(f"the student {config.arch} has {network.count_params():,} parameters; an edge student "
                         f"must have fewer than {MAX_STUDENT_PARAMS:,} (choose a smaller --student or --width)")
    teacher, teacher_info = load_teacher(config.distill.teacher, data)
    student_info = model_info(data, config)
    (s_mean,), (s_std,), (t_mean,), (t_std,) = (student_info.mean, student_info.std, teacher_info.mean,
                                                teacher_info.std)
    return Distiller(network, teacher, config.distill.temperature, config.distill.alpha,
                     classification_loss(config.loss, config.focal_gamma, config.label_smoothing),
                     teacher_scale=s_std / t_std, teacher_shift=(s_mean - t_mean) / t_std)


def load_teacher(path: Path, data: Dataset) -> tuple[Any, ModelInfo]:
    """The teacher model and its metadata; its labels must be the student's, in the same order."""
    info = load_model_info(path)
    if (info.color, info.layout, len(info.mean), len(info.std)) != ("gray", "NHWC", 1, 1):
        raise TrainError(f"teacher {path} is a {info.color} {info.layout} model; train/ teachers are grayscale "
                         "NHWC models written by python -m train")
    if tuple(info.labels) != tuple(data.classes):
        raise TrainError(f"teacher {path} predicts {list(info.labels)}, the data's classes are "
                         f"{list(data.classes)}: pass the same --classes the teacher was trained with")
    return load_keras_model(path, info), info


def load_or_build_model(out: Path, config: TrainConfig, data: Dataset, resume: bool) -> Any:
    """The last epoch's model and optimizer when resuming, else a fresh compiled model."""
    if resume:
        log.info("resuming from %s", out / LAST_FILE)
        return keras.models.load_model(out / LAST_FILE)
    model = build_trainee(config, data)
    compile_model(model, config)
    return model


def load_best_weights(model: Any, out: Path) -> None:
    if (out / BEST_WEIGHTS_FILE).is_file():
        model.load_weights(out / BEST_WEIGHTS_FILE)


def inference_network(model: Any) -> Any:
    return model.student if isinstance(model, Distiller) else model


def finish(model: Any, test_set: Dataset, info: ModelInfo, config: TrainConfig, out: Path,
           device: str) -> dict[str, Any]:
    """Best weights -> learning curves, evaluation report, model.keras and model.json."""
    state = json.loads((out / STATE_FILE).read_text())
    load_best_weights(model, out)
    plot_learning_curves(out / LOG_FILE, out / CURVES_FILE)
    network = inference_network(model)
    extra = None
    if config.distill is not None:
        extra = teacher_report(model, network, test_set, info, load_model_info(config.distill.teacher))
    metrics = evaluate_split(network, test_set, info, config.eval_split, out, config.tta_crop, extra)
    provenance = {"dataset": test_set.source, "arch": config.arch, "recipe": config.recipe,
                  "epochs": state["epochs_done"], "best_epoch": (state["best_epoch"] or 0) + 1,
                  "accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
                  "ten_crop_accuracy": round(metrics["tta"]["ten_crop"]["accuracy"], 4),
                  "eval_split": config.eval_split, "val_split": config.val_split,
                  "val_accuracy": state["best_val_accuracy"], "optimizer": config.optimizer,
                  "schedule": config.schedule, "loss": config.loss, "label_smoothing": config.label_smoothing,
                  "ema": config.ema, "balance": config.balance, "soft_labels": state["soft_labels"],
                  "augment": config.augment is not None, "fine_tune_epochs": config.fine_tune_epochs,
                  "seed": config.seed, "device": device, "parameters": int(network.count_params()),
                  "keras": keras.__version__}
    if config.width != 1.0:
        provenance["width"] = config.width
    if config.distill is not None:
        provenance["distilled_from"] = {"teacher": str(config.distill.teacher),
                                        "temperature": config.distill.temperature, "alpha": config.distill.alpha,
                                        "unlabelled": list(config.distill.unlabelled), **(extra or {})}
    save_inference_model(network, out / MODEL_FILE)
    save_model_info(replace(info, provenance=provenance), out / MODEL_FILE)
    return metrics


def teacher_report(model: Distiller, student: Any, test_set: Dataset, info: ModelInfo,
                   teacher_info: ModelInfo) -> dict[str, Any]:
    """The teacher's accuracy on the evaluation split and how often the student gives its answer."""
    teacher_probs = predict(model.teacher, resize_images(test_set.images, teacher_info.input_height), teacher_info)
    student_probs = predict(student, test_set.images, info)
    teacher_metrics = evaluate_predictions(test_set.labels, teacher_probs, test_set.classes)
    agreement = float(np.mean(teacher_probs.argmax(axis=1) == student_probs.argmax(axis=1)))
    log.info("teacher: accuracy %.4f; the student agrees with it on %.4f of the faces",
             teacher_metrics["accuracy"], agreement)
    return {"teacher_accuracy": teacher_metrics["accuracy"], "teacher_macro_f1": teacher_metrics["macro_f1"],
            "teacher_agreement": agreement}


def write_distribution(train_set: Dataset, config: TrainConfig, out: Path) -> None:
    counts = train_set.counts()
    after = oversampled_counts(counts) if config.balance == "oversample" else None
    plot_class_distribution(train_set.classes, counts, after, out / DISTRIBUTION_FILE)


def save_inference_model(model: Any, path: Path) -> Path:
    """Save the model without optimizer or loss, in float32 whatever the training precision, so loading
    it needs nothing from train/ and the converter sees float32 layers."""
    def float32_layer(layer: Any) -> Any:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    inference = keras.models.clone_model(model, clone_function=float32_layer)
    inference.set_weights(model.get_weights())
    inference.save(path)
    log.info("wrote %s", path)
    return path
