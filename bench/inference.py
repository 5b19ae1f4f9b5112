"""Plant-health inference cost: int8 vs float latency, classify() vs a bare invoke(), and
the verdict path: assess() of a whole image, assess_batch() of the tiles of a 640x480
analysis image, the out-of-distribution score, judge() of a fixed camera's canopy with
and without reusing unchanged zones, and peak RSS.

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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import FakeClock
from edge.config import HealthConfig
from edge.inference import PlantHealthClassifier, bundled_model_dir, load_classifier
from edge.verdict import judge
from edge.vision import analyze
from edge.vision.decode import fit_within
from edge.zones import ZoneCache

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


def fixed_camera_frames(minutes: float, count: int) -> list[np.ndarray]:
    """640x480 analysis images of the synthetic canopy (1280x960, day 18) ``minutes`` apart."""
    settings = SyntheticCameraSettings(
        start_day=18.0, days_per_capture=minutes / 1440.0, yellowing_onset_day=None
    )
    cam = SyntheticCamera(settings, FakeClock(datetime(2026, 3, 2, 8, tzinfo=timezone.utc)))
    frames = []
    for _ in range(count):
        pixels = cam.capture().pixels
        assert pixels is not None
        frames.append(fit_within(pixels, 640))
    return frames


def zones_table(clf: PlantHealthClassifier, captures: int) -> None:
    """judge() per capture of a fixed camera: every zone assessed vs unchanged zones reused.

    Per capture the baseline classify(), judge() without and judge() with the zone cache
    run back to back, so a load spike hits all three alike.
    """
    config = HealthConfig()
    print(f"\n{'fixed camera, per capture (int8, 1 thread)':52} {'ms':>8} "
          f"{'x classify':>11} {'zones':>6} {'assessed':>9}")  # fmt: skip
    for minutes in (0.0, 15.0, 60.0):
        frames = fixed_camera_frames(minutes, captures + 1)
        analyses = [analyze(f) for f in frames]
        base: list[int] = []
        cold: list[int] = []
        warm: list[int] = []
        zones: list[int] = []
        fresh: list[int] = []
        same: list[bool] = []  # zone labels with reuse equal to those without
        repeat: list[bool] = []  # zone labels without reuse equal to the previous capture's
        verdicts: list[bool] = []  # the photo's verdict with reuse equal to the one without
        cache = ZoneCache(config.zone_reuse_max_diff, config.zone_reuse_max_captures)
        last = judge(frames[0], analyses[0], clf, config, cache=cache).health  # fills it
        for _ in range(2):  # warm-up
            clf.classify(frames[0])
        for frame, analysis in zip(frames[1:], analyses[1:], strict=True):
            start = time.perf_counter_ns()
            clf.classify(frame)
            base.append(time.perf_counter_ns() - start)
            start = time.perf_counter_ns()
            every = judge(frame, analysis, clf, config).health
            cold.append(time.perf_counter_ns() - start)
            start = time.perf_counter_ns()
            reused = judge(frame, analysis, clf, config, cache=cache).health
            warm.append(time.perf_counter_ns() - start)
            fresh.append(cache.last_assessed)
            assert every.zones is not None and reused.zones is not None and last.zones
            zones.append(len(every.zones.cells))
            pairs = zip(every.zones.cells, reused.zones.cells, strict=True)
            same += [a.label == b.label for a, b in pairs]
            before = zip(every.zones.cells, last.zones.cells, strict=False)  # grids may differ
            repeat += [a.label == b.label and a.zone == b.zone for a, b in before]
            verdicts.append(every.label == reused.label)
            last = every
        b_ms = statistics.median(base) / 1e6
        print(f"captures {minutes:g} min apart ({captures})")
        print(f"{'  classify() 640x480 (baseline)':52} {b_ms:8.2f} {1.0:11.3f}")
        for name, times, counts in (
            ("  judge(), every zone assessed", cold, zones),
            ("  judge(), unchanged zones reused", warm, fresh),
        ):
            ms = statistics.median(times) / 1e6
            print(f"{name:52} {ms:8.2f} {ms / b_ms:11.3f} {statistics.median(zones):6.0f} "
                  f"{statistics.mean(counts):9.2f}")  # fmt: skip
        print(f"  zone labels: with reuse = without {statistics.mean(same):.1%}; without reuse, "
              f"= previous capture {statistics.mean(repeat):.1%}; photo verdicts with reuse = "
              f"without {statistics.mean(verdicts):.1%}")  # fmt: skip
    print("zones = zones in the grid (median), assessed = zones sent to the model (mean);")
    print("judge() includes the whole-image assess(); goal: zones <= 4x classify")


def main() -> None:
    """Print the latency table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: bundled)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--captures", type=int, default=16, help="fixed-camera captures")
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
    zones_table(clf, args.captures)
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
