"""The Keras model that trains a student on a teacher's softened outputs and, where there are labels, the labels."""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import ops

from train.losses import soft_target_loss

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="fer_train")
class Distiller(keras.Model):
    """Calls the student; its loss adds the teacher's soft term to the hard-label term.

    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * w * hard(y, student), per face,
    where w is the sample weight: 0 for unlabelled faces (they teach through the teacher only), the
    class weight or 1 for labelled ones. The teacher sees the same (augmented) batch, converted from
    the student's normalisation to its own and resized to its input side, and never trains.
    """

    def __init__(self, student: Any, teacher: Any, temperature: float, alpha: float,
                 hard_loss: Any, teacher_scale: float = 1.0, teacher_shift: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.hard_loss = hard_loss
        # teacher input = student input * scale + shift (both networks normalise x / 255 - mean) / std)
        self.teacher_scale, self.teacher_shift = float(teacher_scale), float(teacher_shift)
        self.teacher_side = int(teacher.input_shape[1])

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.student(inputs, training=training)

    def teacher_probabilities(self, inputs: Any) -> Any:
        x = inputs * self.teacher_scale + self.teacher_shift
        side = int(inputs.shape[1])
        if side != self.teacher_side:
            method = "area" if self.teacher_side < side else "bilinear"
            x = ops.image.resize(x, (self.teacher_side, self.teacher_side), interpolation=method)
        return ops.cast(self.teacher(x, training=False), "float32")

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> Any:
        y_pred = ops.cast(y_pred, "float32")
        soft = soft_target_loss(ops.stop_gradient(self.teacher_probabilities(x)), y_pred, self.temperature)
        hard = self.hard_loss.call(ops.cast(y, "float32"), y_pred)  # per face, unreduced
        if sample_weight is not None:
            hard = hard * ops.cast(ops.reshape(sample_weight, ops.shape(hard)), "float32")
        loss = ops.mean(self.alpha * soft + (1.0 - self.alpha) * hard)
        for extra in self.student.losses:  # weight regularisers of the student
            loss = loss + ops.cast(ops.sum(extra), "float32")
        return loss

    def get_config(self) -> dict[str, Any]:
        return {"student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "hard_loss": keras.saving.serialize_keras_object(self.hard_loss),
                "temperature": self.temperature, "alpha": self.alpha,
                "teacher_scale": self.teacher_scale, "teacher_shift": self.teacher_shift}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Distiller:
        config = dict(config)
        for key in ("student", "teacher", "hard_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
