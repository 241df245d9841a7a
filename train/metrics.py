"""Evaluation metrics: edge.metrics, shared with the device's `python -m edge.evaluate` (no TensorFlow there)."""

from edge.metrics import classification_metrics, confusion_matrix, evaluate_predictions, safe_divide  # noqa: F401
