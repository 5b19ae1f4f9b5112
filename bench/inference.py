"""Plant-health inference cost: int8 vs float latency, classify() vs a bare invoke(), and
the verdict path: assess() of a whole image, assess_batch() of the tiles of a 640x480
analysis image, the out-of-distribution score, and peak RSS.

Run from the repository root: python bench/inference.py [--model DIR] [--runs N]
All timings use one interpreter thread on the CPU; medians in milliseconds. Every figure
is printed with its ratio against a baseline measured in the same run (goals: 12 tiles
<= 4x one classify, OOD score <= 10 % of one classify).
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.inference import PlantHealthClassifier, bundled_model_dir, load_classifier

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


def tiles(frame: np.ndarray, side: int) -> list[np.ndarray]:
    """The side x side tiles covering ``frame`` (a 640x480 frame at 160 px gives 12)."""
    h, w = frame.shape[:2]
    return [frame[y : y + side, x : x + side] for y in range(0, h - side + 1, side)
            for x in range(0, w - side + 1, side)]  # fmt: skip


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved_ms(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms of each function, timed in alternating rounds so load spikes hit all alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            fn()
            times[name].append(time.perf_counter_ns() - start)
    return {name: statistics.median(t) / 1e6 for name, t in times.items()}


def verdict_table(clf: PlantHealthClassifier, frame: np.ndarray, runs: int) -> None:
    """Time the verdict path against one classify() of the same frame."""
    parts = tiles(frame, clf.input_size)
    probs, logits, emb = clf.features([frame])
    scorer = clf.ood_scorer
    n = len(parts)
    fns: dict[str, Callable[[], object]] = {
        "classify() 640x480 (baseline)": functools.partial(clf.classify, frame),
        "assess() 640x480": functools.partial(clf.assess, frame),
        f"assess_batch() {n} tiles of {clf.input_size}px": functools.partial(
            clf.assess_batch, parts
        ),
        f"assess() x {n} tiles, one by one": lambda: [clf.assess(t) for t in parts],
        f"OOD score alone ({scorer.spec.method if scorer.spec else 'off'})": lambda: scorer(
            probs, logits, emb
        ),
    }
    result = interleaved_ms(fns, max(20, runs // 4))
    # Alternating batch sizes (whole image, then tiles) reallocates the tensors each time.
    result[f"per capture: assess() then assess_batch({n})"] = median_ms(
        lambda: (clf.assess(frame), clf.assess_batch(parts)), max(10, runs // 10), warmup=2
    )
    base = result["classify() 640x480 (baseline)"]
    print(f"\n{'verdict path (int8, 1 thread)':48} {'ms':>9} {'x classify':>11}")
    for name, ms in result.items():
        print(f"{name:48} {ms:9.3f} {ms / base:11.3f}")
    print("goals: tiles <= 4x classify, OOD score <= 0.10x classify")


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
    rss_start = peak_rss_mib()
    clf = load_classifier(model_dir, delegate="cpu", threads=1)
    clf.classify(frames["640x480"])
    rss_loaded = peak_rss_mib()
    verdict_table(clf, frames["640x480"], args.runs)
    rss_batched = peak_rss_mib()
    print(f"\npeak RSS MiB: before models {rss_start:.1f}, after loading and classify "
          f"{rss_loaded:.1f} (baseline), after tiles batches {rss_batched:.1f} "
          f"(x{rss_batched / rss_loaded:.3f})")  # fmt: skip
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
