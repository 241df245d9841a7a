"""Keras expression model -> quantized TFLite model that describes itself, checked on real faces."""


class ConvertError(ValueError):
    """A conversion cannot go ahead: bad model, bad options or too little calibration data."""
