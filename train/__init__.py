"""Training and evaluation of the expression CNN on FER2013 / FER+ / image folders (needs TensorFlow)."""


class TrainError(ValueError):
    """A user mistake in training input (file, row, option); the message is one line and says what to fix."""
