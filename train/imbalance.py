"""Class-imbalance handling without TensorFlow: balanced class weights and oversampling indices."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

BALANCE_MODES = ("none", "class-weights", "oversample")


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
    """Weight per class, n / (classes present * count), so every present class carries equal total weight.

    Classes with no images get weight 0 (they never occur in training anyway).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def oversample_indices(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffled indices in which every present class appears as often as the largest class.

    Each class keeps all its images once and draws the missing ones at random with replacement, so a
    fresh call (one per epoch) repeats different images.
    """
    counts = np.bincount(labels, minlength=num_classes)
    target = counts.max()
    parts = []
    for label in np.flatnonzero(counts):
        members = np.flatnonzero(labels == label)
        parts.append(members)
        parts.append(rng.choice(members, size=target - len(members), replace=True))
    indices = np.concatenate(parts)
    rng.shuffle(indices)
    return indices


def oversampled_counts(counts: np.ndarray) -> np.ndarray:
    """Images per class after oversampling: the largest class's count for every present class."""
    counts = np.asarray(counts)
    return np.where(counts > 0, counts.max(), 0)
