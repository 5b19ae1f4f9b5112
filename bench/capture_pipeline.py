"""Capture-to-stored time and peak memory for a 12 MP photo, against one plain decode.

The agent's capture step (`Agent.capture_once`) runs on a camera that hands over a
12 MP JPEG, as a replay folder or a Pi camera's JPEG encoder does: the photo is
decoded at reduced size and measured, the overlay is rendered, and the photo,
overlay and observation row are stored (fsynced) in a real Store. The plant-health
model is off (it has its own benchmark) and so is MQTT (no outbox row). The
baseline is one full-size `cv2.imdecode` of the same JPEG, timed alternately with
the capture step in the same process.

Peak memory is measured in fresh child processes: one that runs several capture
cycles, and one that only imports the same modules.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from _common import (
    Stopwatch,
    environment,
    median,
    ms,
    print_goal,
    print_table,
    render_photo,
    stage_medians,
)

from edge.agent import Agent
from edge.camera.base import Exposure, Frame
from edge.clock import Clock, SystemClock
from edge.config import EdgeConfig, config_from_data
from edge.protocol import Observation
from edge.store import StoredImage

WIDTH, HEIGHT = 4056, 3040  # Raspberry Pi HQ camera, 12.3 MP
QUALITY = 90
TIME_GOAL = 2.0  # capture-to-stored / one full decode
RSS_GOAL_MB = 150.0
RSS_CYCLES = 5


class StillCamera:
    """Hands over the same JPEG on every capture, as a replay or Pi camera would."""

    name = "bench"

    def __init__(self, jpeg: bytes, clock: Clock) -> None:
        self._jpeg = jpeg
        self._clock = clock

    def capture(self) -> Frame:
        """A new frame holding the JPEG bytes."""
        return Frame(
            captured_at=self._clock.now(),
            width=WIDTH,
            height=HEIGHT,
            jpeg=self._jpeg,
            exposure=Exposure(exposure_time_us=8000.0, analogue_gain=1.0, locked=True),
            source="bench",
        )

    def close(self) -> None:
        """Nothing to release."""


def bench_config(storage_dir: Path) -> EdgeConfig:
    """Defaults, with storage in `storage_dir` and the model off."""
    data = {
        "device": {"id": "bench"},
        "model": {"enabled": False},
        "storage": {"dir": str(storage_dir)},
    }
    return config_from_data(data, env={}, source="bench")


def start_agent(jpeg: bytes, storage_dir: Path) -> Agent:
    """An agent wired as on a device, with the still camera."""
    clock = SystemClock()
    return Agent(bench_config(storage_dir), clock=clock, camera=StillCamera(jpeg, clock)).start()


def capture(agent: Agent) -> Observation:
    """One capture-to-stored cycle through the agent's own code path."""
    obs = agent.capture_once()
    if obs is None:
        raise RuntimeError(f"capture failed: {agent.stats.last_error or 'frame skipped'}")
    return obs


def capture_in_parts(agent: Agent, watch: Stopwatch) -> None:
    """The steps of `Agent.capture_once`, called one by one to time each.

    Alerts are left out: with MQTT off they are the only other work the agent does
    in the store transaction.
    """
    observer, store = agent.observer, agent.store
    assert agent.camera is not None
    frame = agent.camera.capture()
    measured = observer.measure(frame)
    watch.lap("measure")
    overlay = observer.overlay(measured)
    watch.lap("overlay")
    image = StoredImage(observer.encode_photo(frame), overlay)
    store.add_observation(lambda seq, kept: observer.observation(measured, seq, kept), image)
    watch.lap("store: photo, overlay, row")


def full_decode(jpeg: bytes) -> np.ndarray:
    """The baseline: one plain full-size decode."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError("OpenCV could not decode the benchmark JPEG")
    return bgr


def time_pipeline(jpeg: bytes, storage_dir: Path, repeats: int) -> dict[str, list[Stopwatch]]:
    """Full decode, capture step, and capture step in parts, in rotating order."""
    agent = start_agent(jpeg, storage_dir)
    try:
        capture(agent)  # first-call costs (table creation, allocator growth) stay untimed
        full_decode(jpeg)
        runs: dict[str, list[Stopwatch]] = {"decode": [], "capture": [], "parts": []}
        names = list(runs)
        for rep in range(repeats):
            for name in names[rep % 3 :] + names[: rep % 3]:
                watch = Stopwatch()
                if name == "decode":
                    full_decode(jpeg)
                    watch.lap("full decode")
                elif name == "capture":
                    capture(agent)
                    watch.lap("capture_once")
                else:
                    capture_in_parts(agent, watch)
                runs[name].append(watch)
        return runs
    finally:
        agent.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (10^6 bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # the kernel's "kB" is KiB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes vs KiB


def child(mode: str, jpeg_path: Path | None, cycles: int) -> None:
    """Run inside a fresh process: optionally capture, then print peak memory as JSON."""
    if mode == "capture":
        assert jpeg_path is not None
        with tempfile.TemporaryDirectory(prefix="capture-bench-") as tmp:
            agent = start_agent(jpeg_path.read_bytes(), Path(tmp))
            try:
                for _ in range(cycles):
                    capture(agent)
            finally:
                agent.close()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def child_peak_rss(mode: str, jpeg_path: Path, cycles: int) -> float:
    """Peak memory of a fresh Python running this script in child `mode`."""
    cmd = [sys.executable, __file__, "--child", mode, "--jpeg", str(jpeg_path)]
    cmd += ["--cycles", str(cycles)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {mode!r} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main(argv: list[str] | None = None) -> int:
    """Render the photo, time capture-to-stored against a decode, measure peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each (1-200)")
    parser.add_argument("--cycles", type=int, default=RSS_CYCLES, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("imports", "capture"), help=argparse.SUPPRESS)
    parser.add_argument("--jpeg", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the agent logs every stored observation
    cycles = max(1, min(args.cycles, 100))
    if args.child:
        child(args.child, args.jpeg, cycles)
        return 0
    repeats = max(1, min(args.repeats, 200))

    print(f"capture-to-stored, {WIDTH}x{HEIGHT} JPEG q{QUALITY}: {environment()}")
    jpeg, _ = render_photo(WIDTH, HEIGHT, seed=7, day=20.0, yellowing_onset_day=14.0)
    print(
        f"photo {len(jpeg) / 1e6:.1f} MB; model off, MQTT off; {repeats} runs of each, "
        "rotating order"
    )
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as tmp:
        runs = time_pipeline(jpeg, Path(tmp) / "store", repeats)
        jpeg_path = Path(tmp) / "photo.jpg"
        jpeg_path.write_bytes(jpeg)
        baseline_mb = child_peak_rss("imports", jpeg_path, cycles)
        capture_mb = child_peak_rss("capture", jpeg_path, cycles)

    decode_s = median([w.total for w in runs["decode"]])
    capture_s = median([w.total for w in runs["capture"]])
    parts = stage_medians(runs["parts"])
    ratio = capture_s / decode_s
    print()
    print_table(
        ["step", "median ms", "x full decode"],
        [
            ["full decode (baseline)", ms(decode_s), "1.00"],
            ["capture_once: capture to stored", ms(capture_s), f"{ratio:.2f}"],
        ]
        + [[f"  {name}", ms(s), f"{s / decode_s:.2f}"] for name, s in parts.items()],
    )
    print("(the indented rows come from a separate run of the same steps, one by one)")
    print()
    print_table(
        ["process", "peak RSS MB"],
        [
            ["imports only (baseline)", f"{baseline_mb:.1f}"],
            [f"{cycles} capture cycles", f"{capture_mb:.1f}"],
            ["difference", f"{capture_mb - baseline_mb:.1f}"],
        ],
    )
    print()
    print_goal(
        f"capture-to-stored <= {TIME_GOAL:.0f}x one full decode (measured {ratio:.2f}x)",
        ratio <= TIME_GOAL,
    )
    print_goal(
        f"peak RSS over {cycles} capture cycles <= {RSS_GOAL_MB:.0f} MB "
        f"(measured {capture_mb:.1f} MB)",
        capture_mb <= RSS_GOAL_MB,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
