"""Training losses: cross-entropy or Keras' focal loss (with label smoothing) and the distillation terms."""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import ops

log = logging.getLogger(__name__)

LOG_EPSILON = 1e-12  # probabilities are clipped here before the log of the tempered softmax


def classification_loss(name: str, focal_gamma: float = 2.0, label_smoothing: float = 0.0) -> Any:
    """Categorical cross-entropy, or focal loss (Lin et al. 2017) as Keras implements it.

    Keras' focal loss defaults to alpha = 0.25, a constant factor on every term; alpha = 1 keeps the
    loss on the scale of cross-entropy (gamma = 0 is then exactly cross-entropy), as the seeds had it.
    Per-class weights come from ``--balance class-weights`` (sample weights) instead.
    """
    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=focal_gamma,
                                                         label_smoothing=label_smoothing)
    if name == "crossentropy":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name!r}")


def tempered(probs: Any, temperature: float) -> Any:
    """softmax(logits / T) computed from softmax outputs: log p differs from the logits by a constant."""
    return ops.softmax(ops.log(ops.clip(probs, LOG_EPSILON, 1.0)) / temperature, axis=-1)


def soft_target_loss(teacher_probs: Any, student_probs: Any, temperature: float) -> Any:
    """Per-sample T^2 * KL(teacher_T || student_T) (Hinton et al. 2015): the T^2 keeps its gradients on
    the scale of the hard-label term whatever the temperature."""
    target = tempered(teacher_probs, temperature)
    log_student = ops.log(ops.clip(tempered(student_probs, temperature), LOG_EPSILON, 1.0))
    log_target = ops.log(ops.clip(target, LOG_EPSILON, 1.0))
    return temperature ** 2 * ops.sum(target * (log_target - log_student), axis=-1)
