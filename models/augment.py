"""Batched, seeded training augmentation for grow-room photos (TensorFlow)."""

from __future__ import annotations

import math

import tensorflow as tf

# Per-channel RGB gains of typical grow lights as seen by a camera with fixed white balance.
LIGHT_PRESETS = (
    (1.30, 0.78, 1.30),  # magenta (red+blue) LED
    (0.85, 0.92, 1.35),  # blue-heavy LED
    (1.35, 1.00, 0.60),  # HPS amber
    (1.15, 1.00, 0.80),  # warm white
    (0.90, 1.00, 1.15),  # cool white
)


def _uniform(
    seed: tf.Tensor, shape: tuple[int, ...] | tf.Tensor, lo: float, hi: float
) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, lo, hi)


def _geometry(images: tf.Tensor, size: int, seeds: tf.Tensor) -> tf.Tensor:
    """Random zoom/crop, aspect, translation and rotation in one resampling, reflect fill."""
    b = tf.shape(images)[0]
    src = tf.cast(tf.shape(images)[1], tf.float32)
    side = src * tf.sqrt(_uniform(seeds[0], (b,), 0.35, 1.10))
    ratio = tf.exp(_uniform(seeds[1], (b,), math.log(3 / 4), math.log(4 / 3)))
    kx, ky = side / size * tf.sqrt(ratio), side / size / tf.sqrt(ratio)
    slack = tf.maximum(src - side, 0.0) / 2 + 0.05 * src
    cx = src / 2 + slack * _uniform(seeds[2], (b,), -1.0, 1.0)
    cy = src / 2 + slack * _uniform(seeds[3], (b,), -1.0, 1.0)
    theta = _uniform(seeds[4], (b,), -0.45, 0.45)  # about +-25 degrees
    cos, sin, h = tf.cos(theta), tf.sin(theta), size / 2
    transforms = tf.stack(
        [
            kx * cos,
            -ky * sin,
            cx - (kx * cos * h - ky * sin * h),
            kx * sin,
            ky * cos,
            cy - (kx * sin * h + ky * cos * h),
            tf.zeros_like(cos),
            tf.zeros_like(cos),
        ],
        axis=1,
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    # Any of the 8 dihedral orientations: leaves have no canonical up.
    flips = _uniform(seeds[5], (3, b, 1, 1, 1), 0.0, 1.0) < 0.5
    out = tf.where(flips[0], tf.transpose(out, [0, 2, 1, 3]), out)
    out = tf.where(flips[1], tf.reverse(out, [2]), out)
    return tf.where(flips[2], tf.reverse(out, [1]), out)


def _hue_saturation(b: tf.Tensor, hue_seed: tf.Tensor, sat_seed: tf.Tensor) -> tf.Tensor:
    """Per-image 3x3 RGB matrices: hue rotation (+-11 degrees) and saturation x0.6..1.4 in YIQ."""
    to_yiq = tf.constant([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = _uniform(hue_seed, (b,), -0.19, 0.19)
    sat = _uniform(sat_seed, (b,), 0.6, 1.4)
    cos, sin, one, zero = (
        sat * tf.cos(angle),
        sat * tf.sin(angle),
        tf.ones_like(sat),
        tf.zeros_like(sat),
    )
    rot = tf.reshape(
        tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1), (-1, 3, 3)
    )
    return tf.linalg.inv(to_yiq)[None] @ rot @ to_yiq[None]


def _colour(x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """White balance / grow-light tint, brightness, contrast, saturation, hue, gamma; x in [0,1]."""
    b = tf.shape(x)[0]
    gains = tf.exp(tf.random.stateless_normal((b, 3), seeds[0], stddev=0.08))
    preset = tf.gather(
        tf.constant(LIGHT_PRESETS, tf.float32),
        tf.random.stateless_uniform((b,), seeds[1], 0, 5, tf.int32),
    )
    strength = _uniform(seeds[2], (b, 1), 0.2, 1.0) * tf.cast(
        _uniform(seeds[3], (b, 1), 0.0, 1.0) < 0.5, tf.float32
    )
    gains *= 1.0 + strength * (preset - 1.0)
    gains /= tf.reduce_sum(gains * [0.299, 0.587, 0.114], axis=1, keepdims=True)
    brightness = tf.exp(_uniform(seeds[4], (b, 1), math.log(0.6), math.log(1.4)))
    x = x * (gains * brightness)[:, None, None, :]
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * _uniform(seeds[5], (b, 1, 1, 1), 0.7, 1.3) + mean
    x = tf.einsum("bhwc,bdc->bhwd", x, _hue_saturation(b, seeds[6], seeds[7]))
    gamma = tf.exp(_uniform(seeds[8], (b, 1, 1, 1), math.log(0.8), math.log(1.25)))
    return tf.pow(tf.clip_by_value(x, 1e-4, 1.0), gamma)


def _background(x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """Re-tint reddish/brown (soil-like) pixels so the soil colour is no class cue."""
    b = tf.shape(x)[0]
    mask = tf.sigmoid((x[..., 0:1] - x[..., 1:2] - 0.08) * 30.0)
    lum = tf.reduce_sum(x * [0.299, 0.587, 0.114], axis=-1, keepdims=True)
    tint = _uniform(seeds[0], (b, 1, 1, 3), 0.6, 1.4)
    keep = _uniform(seeds[1], (b, 1, 1, 1), 0.0, 0.6)
    recoloured = lum * tint + keep * (x - lum)
    apply = tf.cast(_uniform(seeds[2], (b, 1, 1, 1), 0.0, 1.0) < 0.3, tf.float32)
    return x + apply * mask * (recoloured - x)


def _blur_noise(x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """Per-image Gaussian blur (30% of images, focus/motion) and sensor noise."""
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    blurred = tf.cast(_uniform(seeds[0], (b,), 0.0, 1.0) < 0.3, tf.float32)
    sigma = 0.05 + blurred * _uniform(seeds[1], (b,), 0.4, 1.6)
    r = tf.range(-3.0, 4.0)
    k1 = tf.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 /= tf.reduce_sum(k1, axis=1, keepdims=True)
    k1 = tf.reshape(tf.transpose(tf.repeat(k1[..., None], 3, axis=-1), [1, 0, 2]), [7, -1])
    stacked = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, -1])  # channels = b * 3
    padded = tf.pad(stacked, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    out = tf.nn.depthwise_conv2d(padded, k1[:, None, :, None], [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, k1[None, :, :, None], [1, 1, 1, 1], "VALID")
    x = tf.transpose(tf.reshape(out, [h, w, b, 3]), [2, 0, 1, 3])
    noise_sd = _uniform(seeds[2], (b, 1, 1, 1), 0.0, 0.02)
    return x + noise_sd * tf.random.stateless_normal(tf.shape(x), seeds[3])


@tf.function(reduce_retracing=True)
def augment(images: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
    """Augment uint8 [B,H,W,3] RGB images to float32 [B,size,size,3] in 0..255."""
    seeds = tf.random.experimental.stateless_split(seed, num=24)
    x = _geometry(tf.cast(images, tf.float32), size, seeds[0:6]) / 255.0
    x = _colour(x, seeds[6:15])
    x = _background(x, seeds[15:18])
    x = _blur_noise(x, seeds[18:22])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0
