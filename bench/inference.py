"""Plant-health inference cost: int8 vs float latency, and classify() vs a bare invoke().

Run from the repository root: python bench/inference.py [--model DIR] [--runs N]
All timings use one interpreter thread on the CPU; medians in milliseconds.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.inference import bundled_model_dir, load_classifier

FRAMES = {"224x224": (224, 224), "640x480": (480, 640), "1920x1080": (1080, 1920)}


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 10) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e6


def bare_invoke_ms(model_path: Path, runs: int) -> float:
    """Median time of interpreter.invoke() alone, input tensor set once beforehand."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
    else:
        data = rng.uniform(0, 255, detail["shape"])
    interpreter.set_tensor(detail["index"], data.astype(detail["dtype"]))
    return median_ms(interpreter.invoke, runs)


def main() -> None:
    """Print the latency table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: bundled)")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    model_dir = args.model or bundled_model_dir()
    rng = np.random.default_rng(1)
    frames = {k: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for k, hw in FRAMES.items()}

    print(f"model folder: {model_dir}   threads: 1   runs: {args.runs}")
    header = f"{'variant':8} {'backend':12} {'invoke ms':>10}"
    header += "".join(f" {'classify ' + k:>20} {'ratio':>6}" for k in FRAMES)
    print(header)
    for variant in ("int8", "float"):
        clf = load_classifier(model_dir, delegate="cpu", threads=1, variant=variant)
        file_name = "model.tflite" if variant == "int8" else "model_float.tflite"
        invoke = bare_invoke_ms(model_dir / file_name, args.runs)
        row = f"{variant:8} {clf.info.backend:12} {invoke:10.2f}"
        for frame in frames.values():
            ms = median_ms(functools.partial(clf.classify, frame), args.runs)
            row += f" {ms:20.2f} {ms / invoke:6.2f}"
        print(row)
    print("ratio = classify() end to end (crop, resize, quantize, invoke, decode) / bare invoke()")


if __name__ == "__main__":
    main()
