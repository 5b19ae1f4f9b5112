"""Train, export and evaluate the plant-health model: python -m models.train --data DIR."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from edge.inference.preprocess import load_rgb, resize_square
from models.augment import augment
from models.calibrate import calibrate
from models.card import build_manifest, write_card, write_model_files
from models.data import LABELS, Sample, fingerprint, grouped_split, read_dataset, write_split
from models.evaluate import evaluate_split
from models.export import to_float_tflite, to_int8_tflite
from models.metrics import report
from models.network import build_model

log = logging.getLogger("models.train")
SOURCE_SIZE = 224


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/leaf-health"))
    p.add_argument("--out", type=Path, default=Path("models/plant_health"))
    p.add_argument(
        "--card", type=Path, default=Path("models/README.md"), help="model card to write"
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--size", type=int, default=160, help="model input size (square)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads")
    p.add_argument("--version", default="1.0.0")
    return p.parse_args(argv)


def load_images(data_dir: Path, samples: Sequence[Sample], size: int) -> np.ndarray:
    """Decode ``samples`` (OpenCV, as on the device) into an (N, size, size, 3) uint8 array."""
    out = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for i, s in enumerate(samples):
        resize_square(load_rgb(str(data_dir / s.file)), size, out=out[i])
    return out


def class_balance(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sampling probability per image (class share ~ sqrt(count)) and per-class loss weights.

    Together they weight every class equally in expectation while a rare class is
    repeated only about sqrt(imbalance) times as often as it occurs.
    """
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    per_image = counts[y] ** -0.5
    loss_w = counts**-0.5
    loss_w /= (loss_w[y] * per_image / per_image.sum()).sum()  # mean sampled weight = 1
    return per_image / per_image.sum(), loss_w.astype(np.float32)


def train(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> tuple[keras.Model, dict[str, float | int]]:
    """Train from scratch; keep the weights of the epoch with the best validation macro-F1."""
    rng = np.random.default_rng(args.seed)
    steps = math.ceil(len(y) / args.batch)
    model = build_model(args.size, len(LABELS))
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr * 0.05,
        decay_steps=(args.epochs - 3) * steps,
        alpha=0.01,
        warmup_target=args.lr,
        warmup_steps=3 * steps,
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing)
    probs, loss_w = class_balance(y)
    onehot = np.eye(len(LABELS), dtype=np.float32)

    @tf.function(reduce_retracing=True)
    def step(images: tf.Tensor, target: tf.Tensor, weight: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        batch = augment(images, seed, args.size)
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(batch, training=True), sample_weight=weight)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def forward(images: tf.Tensor) -> tf.Tensor:
        return model(tf.cast(images, tf.float32), training=False)

    best: dict[str, float | int] = {"val_macro_f1": -1.0, "epoch": 0}
    best_weights = model.get_weights()
    for epoch in range(1, args.epochs + 1):
        start, losses = time.time(), []
        order = rng.choice(len(y), size=steps * args.batch, p=probs)
        for i in range(steps):
            idx = np.sort(order[i * args.batch : (i + 1) * args.batch])
            seed = tf.constant([args.seed, epoch * 10_000 + i], tf.int64)
            losses.append(float(step(x[idx], onehot[y[idx]], loss_w[y[idx]], seed)))
        val_p = np.concatenate(
            [forward(x_val[i : i + 64]).numpy() for i in range(0, len(y_val), 64)]
        )
        val_loss = float(-np.mean(np.log(val_p[np.arange(len(y_val)), y_val] + 1e-7)))
        f1 = report(y_val.tolist(), val_p.argmax(1).tolist(), LABELS)["macro_f1"]
        log.info(
            "epoch %d/%d loss %.4f val_loss %.4f val_macro_f1 %.4f (%.0fs)",
            epoch,
            args.epochs,
            np.mean(losses),
            val_loss,
            f1,
            time.time() - start,
        )
        if epoch > 3 and f1 >= float(best["val_macro_f1"]):
            best = {"val_macro_f1": f1, "val_loss": round(val_loss, 4), "epoch": epoch}
            best_weights = model.get_weights()
    model.set_weights(best_weights)
    log.info("selected epoch %s (val macro-F1 %s)", best["epoch"], best["val_macro_f1"])
    return model, best


def calibration_set(x_train: np.ndarray, seed: int, size: int) -> np.ndarray:
    """Images for int8 calibration: plain training images plus augmented (tinted, blurred) ones."""
    rng = np.random.default_rng(seed + 1)
    plain_idx = rng.choice(len(x_train), size=160, replace=False)
    plain = np.stack([resize_square(img, size) for img in x_train[plain_idx]])
    aug_idx = np.sort(rng.choice(len(x_train), size=80, replace=False))
    augmented = augment(x_train[aug_idx], tf.constant([seed, 999_999], tf.int64), size).numpy()
    return np.concatenate([plain, np.round(augmented).astype(np.uint8)])


def main(argv: Sequence[str] | None = None) -> None:
    """Split, train, export int8 + float TFLite, evaluate and write manifest and model card."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    args.out.mkdir(parents=True, exist_ok=True)

    samples = grouped_split(read_dataset(args.data), args.seed)
    write_split(samples, args.out / "split.csv")
    by_split = {sp: [s for s in samples if s.split == sp] for sp in ("train", "val", "test")}
    log.info("split: %s", {k: len(v) for k, v in by_split.items()})
    x_train = load_images(args.data, by_split["train"], SOURCE_SIZE)
    y_train = np.array([LABELS.index(s.label) for s in by_split["train"]])
    x_val = load_images(args.data, by_split["val"], args.size)
    y_val = np.array([LABELS.index(s.label) for s in by_split["val"]])

    started = time.time()
    model, best = train(args, x_train, y_train, x_val, y_val)
    train_seconds = round(time.time() - started)

    int8 = to_int8_tflite(model, args.size, calibration_set(x_train, args.seed, args.size))
    write_model_files(args.out, LABELS, to_float_tflite(model, args.size), int8)
    settings = {
        "seed": args.seed,
        "epochs": args.epochs,
        "selected_epoch": best["epoch"],
        "image_size": args.size,
        "batch_size": args.batch,
        "optimizer": "AdamW",
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
        "schedule": "3-epoch warm-up, cosine decay",
        "class_balance": "sqrt-frequency sampling + inverse-sqrt class weights",
        "model_selection": "best validation macro-F1 (float Keras model)",
        "parameters": int(model.count_params()),
        "train_seconds": train_seconds,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    data = {
        "fingerprint": fingerprint(samples, args.data),
        "images": len(samples),
        "split_counts": {k: len(v) for k, v in by_split.items()},
    }
    manifest = build_manifest(args.out, args.version, LABELS, args.size, settings, data)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    metrics = {
        "val": evaluate_split(args.out, args.data, by_split["val"], LABELS),
        "test": evaluate_split(args.out, args.data, by_split["test"], LABELS),
    }
    manifest = build_manifest(args.out, args.version, LABELS, args.size, settings, data, metrics)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    # Adds the logits/embedding outputs, fits temperature and the OOD score, measures them.
    manifest = calibrate(args.data, args.out)
    write_card(manifest, args.card)
    test = metrics["test"]
    log.info(
        "test macro-F1 int8 %.4f float %.4f agreement %.4f",
        test["int8"]["macro_f1"],
        test["float"]["macro_f1"],
        test["int8_float_top1_agreement"],
    )


if __name__ == "__main__":
    main()
