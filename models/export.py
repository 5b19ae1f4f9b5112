"""Conversion of the trained Keras model to float and full-integer int8 TFLite."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf


def _converter(model: keras.Model, size: int) -> tf.lite.TFLiteConverter:
    if tuple(model.input_shape[1:]) != (size, size, 3):
        raise ValueError(f"model input {model.input_shape} is not {size}x{size}x3")
    return tf.lite.TFLiteConverter.from_keras_model(model)


def to_float_tflite(model: keras.Model, size: int) -> bytes:
    """Float32 TFLite model: input float RGB 0..255, output probabilities."""
    return bytes(_converter(model, size).convert())


def to_int8_tflite(model: keras.Model, size: int, calibration: np.ndarray) -> bytes:
    """Full-integer TFLite model (int8 in/out) calibrated on uint8 (N,size,size,3) images."""

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[None].astype(np.float32)]

    converter = _converter(model, size)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())
