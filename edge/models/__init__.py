"""The shipped expression models, by name: what `--model NAME` and `classifier.model = "NAME"` select."""

from __future__ import annotations

from pathlib import Path

from edge.model import ModelError

MODELS_DIR = Path(__file__).resolve().parent
# name -> .tflite in this folder (each with its .json sidecar); `python -m convert.pretrained --name NAME` rebuilds it
SHIPPED = {
    "fer2013-mini-xception": "fer2013_mini_xception_int8.tflite",
    "face-api-expression": "face_api_expression_int8.tflite",
}
DEFAULT_NAME = "fer2013-mini-xception"
DEFAULT_MODEL = MODELS_DIR / SHIPPED[DEFAULT_NAME]


def resolve_model(spec: str | Path | None) -> Path:
    """A model path from --model / classifier.model: a shipped model's name, a .tflite path, or None (the default)."""
    if spec is None or str(spec) == "":
        return DEFAULT_MODEL
    text = str(spec)
    if text in SHIPPED:
        path = MODELS_DIR / SHIPPED[text]
        if not path.is_file():
            raise ModelError(f"model {text!r} is not installed ({path} is missing): "
                             f"build it with `python -m convert.pretrained --name {text}`")
        return path
    path = Path(text).expanduser()
    if path.is_file() or path.suffix or "/" in text or "\\" in text:
        return path  # a path: load_model_info says what is wrong with it, if anything
    raise ModelError(f"model not found: {text!r} is neither a file nor a shipped model "
                     f"({', '.join(SHIPPED)})")


def model_name(path: Path) -> str:
    """The shipped name of a model file, or its file stem."""
    for name, file in SHIPPED.items():
        if Path(path).resolve() == MODELS_DIR / file:
            return name
    return Path(path).stem
