"""The CNN architectures by name: the seeds' three CNNs and a mini-Xception, for grayscale faces."""

# Keras is imported inside the builders so that argument checking does not pay TensorFlow's import.
#
# Reconstruction notes (where the seed texts left a choice open):
# - ``cnn1m`` (seed 002, 5 classes, 1,004,805 parameters at 48x48): layer order, sizes and counts are
#   the seed's printed summary. Its dropout rates and activation are not printed; we use ReLU, 0.25
#   after the second conv and 0.5 after the first dense layer.
# - ``vgg_bn`` (seed 003, "VGG-like, 1.2M trainable, batch norm"): five blocks of two 3x3 convs
#   (32, 64, 64, 128, 128 filters, ReLU then batch norm) with 2x2 max pooling, two dense 512 layers
#   with dropout 0.6, at 64x64 input; 1,186,536 trainable parameters with 8 classes. The seed's output
#   bias of -2 served its sigmoid focal loss and is left out for the softmax output here.
# - ``cnn4block`` (seed 004): 64 3x3, 128 5x5, 512 3x3, 512 3x3 conv blocks (batch norm, ReLU, 2x2 max
#   pool, dropout 0.25), dense 256 and 512 (batch norm, ReLU, dropout 0.25). The padding is not stated
#   (its summary is only an image link); we use "same": 4,478,727 parameters at 48x48 with 7 classes.
# - ``mini_xception``: the mini-Xception of Arriaga et al. used by the ``fer`` package (8-filter stem,
#   four depthwise-separable residual modules of 16/32/64/128 filters, global average pooling), 64x64
#   input; 58,423 parameters with 7 classes at any input size. L2 0.01 sits on the two stem convs only:
#   the original also passed it to its separable convs, but as ``kernel_regularizer``, which Keras 2's
#   SeparableConv2D (depthwise/pointwise kernels, own regularizer arguments) does not apply as far as
#   we can read its code, so the model it trained most likely had none there either.
#   The residual branches' 1x1 stride-2 convolutions are written as a 1x1 stride-2 subsample (max pool
#   of size 1) followed by a 1x1 convolution: the same function and weights, but TensorFlow 2.21's
#   oneDNN CPU kernel for the gradient of a strided 1x1 convolution segfaults on inputs of about 56 px
#   and more (measured: 60x60 and 64x64 crash, 44x44 and 48x48 do not), which a 64x64 mini-Xception hits.
# - ``vgg_khaireddin``: the VGG variant of Khaireddin & Chen 2021 (arXiv 2105.03588), as in the authors'
#   code (github.com/usef-kh/fer, models/vgg.py): four stages of two 3x3 "same" convolutions (64, 128,
#   256, 512 filters), each followed by batch norm and ReLU, 2x2 max pooling after every stage, then two
#   dense 4096 layers with dropout 0.2 and the softmax output. At the paper's 40x40 input the last stage
#   is 2x2x512, and the network has 29,894,599 parameters with 7 classes. ``width`` multiplies every
#   filter and dense count (0.125: 8-16-32-64 filters, dense 512), so tests can train a small one.
# - Every network ends in a float32 softmax layer: under mixed precision (float16 compute) the
#   probabilities and the loss stay in float32, as Keras' mixed-precision guide asks.

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchSpec:
    """An architecture's default input side (pixels) and where it comes from."""

    side: int
    origin: str


ARCHITECTURES = {
    "mini_xception": ArchSpec(64, "mini-Xception (Arriaga et al. 2017), as in the fer package"),
    "cnn1m": ArchSpec(48, "seed 002: 4-conv CNN, ~1.0M parameters, trained there on 5 classes"),
    "vgg_bn": ArchSpec(64, "seed 003: VGG-like CNN with batch norm, ~1.2M parameters"),
    "cnn4block": ArchSpec(48, "seed 004: 4-block 64-128-512-512 CNN, ~4.5M parameters"),
    "vgg_khaireddin": ArchSpec(40, "Khaireddin & Chen 2021: VGG variant, ~30M parameters at width 1"),
}
INPUT_SIDES = (32, 40, 48, 64)  # pixels
WIDTH_ARCHS = ("vgg_khaireddin",)  # architectures whose width can be scaled
KHAIREDDIN_FILTERS = (64, 128, 256, 512)
KHAIREDDIN_DENSE = 4096
KHAIREDDIN_DROPOUT = 0.2
# Batch-norm moving-average momentum. Keras' 0.99 needs ~500 steps before the inference statistics
# forget their initial variance of 1, far above the variance of x/255 inputs: models evaluated early, or
# trained on small sets, predict one class. 0.9 (PyTorch's default) settles in ~50 steps; on FER2013
# (~450 steps an epoch) the two agree after the first epoch. Parameter counts are unaffected.
BN_MOMENTUM = 0.9


def build_model(arch: str, num_classes: int, side: int | None = None, width: float = 1.0) -> Any:
    """A fresh, uncompiled Keras model taking (side, side, 1) normalised grayscale and returning softmax."""
    check_width(arch, width)
    side = side or ARCHITECTURES[arch].side
    if arch == "vgg_khaireddin":
        model = vgg_khaireddin((side, side, 1), num_classes, width)
    else:
        builders = {"mini_xception": mini_xception, "cnn1m": cnn1m, "vgg_bn": vgg_bn, "cnn4block": cnn4block}
        model = builders[arch]((side, side, 1), num_classes)
    log.info("built %s for %dx%d input, %d classes: %d parameters", arch, side, side, num_classes,
             model.count_params())
    return model


def check_width(arch: str, width: float) -> None:
    """Width scaling exists for WIDTH_ARCHS only; it must leave at least one filter per layer."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if width != 1.0 and arch not in WIDTH_ARCHS:
        raise ValueError(f"--width applies to {', '.join(WIDTH_ARCHS)} only, not {arch}")
    if not 1 / 64 <= width <= 4.0:
        raise ValueError(f"width must be in [1/64, 4], got {width}")


def softmax() -> Any:
    """The output activation, float32 even under a mixed-precision policy."""
    from keras import layers

    return layers.Activation("softmax", dtype="float32")


def batch_norm() -> Any:
    from keras import layers

    return layers.BatchNormalization(momentum=BN_MOMENTUM)


def cnn1m(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    from keras import Input, Sequential, layers

    return Sequential([
        Input(input_shape),
        layers.Conv2D(64, 3), layers.Activation("relu"), batch_norm(), layers.MaxPooling2D(),
        layers.Conv2D(128, 3), layers.Dropout(0.25), layers.Activation("relu"), batch_norm(),
        layers.MaxPooling2D(),
        layers.Conv2D(256, 3), layers.Activation("relu"), batch_norm(), layers.MaxPooling2D(),
        layers.Conv2D(256, 3), layers.Activation("relu"), batch_norm(), layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128), layers.Activation("relu"), batch_norm(), layers.Dropout(0.5),
        layers.Dense(64), layers.Activation("relu"), batch_norm(),
        layers.Dense(num_classes), softmax(),
    ], name="cnn1m")


def vgg_bn(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    from keras import Input, Sequential, layers

    model = Sequential([Input(input_shape)], name="vgg_bn")
    for filters in (32, 64, 64, 128, 128):
        for _ in range(2):
            model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
            model.add(batch_norm())
        model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    for _ in range(2):
        model.add(layers.Dense(512, activation="relu"))
        model.add(layers.Dropout(0.6))
    model.add(layers.Dense(num_classes))
    model.add(softmax())
    return model


def cnn4block(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    from keras import Input, Sequential, layers

    model = Sequential([Input(input_shape)], name="cnn4block")
    for filters, kernel in ((64, 3), (128, 5), (512, 3), (512, 3)):
        model.add(layers.Conv2D(filters, kernel, padding="same"))
        model.add(batch_norm())
        model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D())
        model.add(layers.Dropout(0.25))
    model.add(layers.Flatten())
    for units in (256, 512):
        model.add(layers.Dense(units))
        model.add(batch_norm())
        model.add(layers.Activation("relu"))
        model.add(layers.Dropout(0.25))
    model.add(layers.Dense(num_classes))
    model.add(softmax())
    return model


def mini_xception(input_shape: tuple[int, int, int], num_classes: int, l2: float = 0.01) -> Any:
    from keras import Input, Model, layers, regularizers

    reg = regularizers.l2(l2)
    inputs = Input(input_shape)
    x = inputs
    for _ in range(2):
        x = layers.Conv2D(8, 3, use_bias=False, kernel_regularizer=reg)(x)
        x = batch_norm()(x)
        x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        # = Conv2D(filters, 1, strides=2, padding="same"): see the module notes on the oneDNN crash
        residual = layers.MaxPooling2D(1, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, use_bias=False)(residual)
        residual = batch_norm()(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = batch_norm()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = batch_norm()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, residual])
    x = layers.Conv2D(num_classes, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = softmax()(x)
    return Model(inputs, outputs, name="mini_xception")


def vgg_khaireddin(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> Any:
    from keras import Input, Sequential, layers

    scaled = [max(1, round(f * width)) for f in KHAIREDDIN_FILTERS]
    model = Sequential([Input(input_shape)], name="vgg_khaireddin")
    for filters in scaled:
        for _ in range(2):
            model.add(layers.Conv2D(filters, 3, padding="same"))
            model.add(batch_norm())
            model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    for _ in range(2):
        model.add(layers.Dense(max(1, round(KHAIREDDIN_DENSE * width))))
        model.add(layers.Dropout(KHAIREDDIN_DROPOUT))
        model.add(layers.Activation("relu"))
    model.add(layers.Dense(num_classes))
    model.add(softmax())
    return model
