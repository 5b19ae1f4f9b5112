"""A compact MobileNetV3-Small-style classifier that quantizes cleanly to int8."""

from __future__ import annotations

import keras
from keras import layers

# expansion, out channels, kernel, stride, squeeze-excite, activation (MobileNetV3-Small)
BLOCKS = (
    (16, 16, 3, 2, True, "relu"),
    (72, 24, 3, 2, False, "relu"),
    (88, 24, 3, 1, False, "relu"),
    (96, 40, 5, 2, True, "hard_swish"),
    (240, 40, 5, 1, True, "hard_swish"),
    (240, 40, 5, 1, True, "hard_swish"),
    (120, 48, 5, 1, True, "hard_swish"),
    (144, 48, 5, 1, True, "hard_swish"),
    (288, 96, 5, 2, True, "hard_swish"),
    (576, 96, 5, 1, True, "hard_swish"),
    (576, 96, 5, 1, True, "hard_swish"),
)


def _bn(x: keras.KerasTensor) -> keras.KerasTensor:
    return layers.BatchNormalization(momentum=0.97, epsilon=1e-3)(x)


def _squeeze_excite(x: keras.KerasTensor, channels: int) -> keras.KerasTensor:
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(max(8, channels // 4), 1, activation="relu")(s)
    s = layers.Conv2D(channels, 1, activation="hard_sigmoid")(s)
    return layers.Multiply()([x, s])


def _block(x: keras.KerasTensor, spec: tuple[int, int, int, int, bool, str]) -> keras.KerasTensor:
    expand, out, kernel, stride, se, act = spec
    shortcut, cin = x, x.shape[-1]
    if expand != cin:
        x = layers.Activation(act)(_bn(layers.Conv2D(expand, 1, use_bias=False)(x)))
    x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False)(x)
    x = layers.Activation(act)(_bn(x))
    if se:
        x = _squeeze_excite(x, expand)
    x = _bn(layers.Conv2D(out, 1, use_bias=False)(x))
    if stride == 1 and cin == out:
        x = layers.Add()([shortcut, x])
    return x


def build_model(size: int, classes: int, dropout: float = 0.25) -> keras.Model:
    """Input: float RGB 0..255 (rescaled inside); output: softmax probabilities."""
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(16, 3, 2, padding="same", use_bias=False)(x)
    x = layers.Activation("hard_swish")(_bn(x))
    for spec in BLOCKS:
        x = _block(x, spec)
    x = layers.Activation("hard_swish")(_bn(layers.Conv2D(576, 1, use_bias=False)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="plant_health")
