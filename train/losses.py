"""Categorical focal loss (Lin et al. 2017) for softmax outputs, hard or soft targets."""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import ops

log = logging.getLogger(__name__)

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log


@keras.saving.register_keras_serializable(package="fer_train")
class CategoricalFocalLoss(keras.losses.Loss):
    """FL(p) = -sum_c alpha_c * y_c * (1 - p_c)^gamma * log(p_c), summed over classes.

    gamma = 0 and no alpha is plain categorical cross-entropy. ``alpha`` is an optional per-class
    weight list (the seeds used one per class); a per-sample weight (class weights) multiplies on top.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None,
                 name: str = "categorical_focal_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else [float(a) for a in alpha]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        probs = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        loss = -y_true * ops.power(1.0 - probs, self.gamma) * ops.log(probs)
        if self.alpha is not None:
            loss = loss * ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        return ops.sum(loss, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}
