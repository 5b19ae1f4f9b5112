"""Time-lapse encoding rate against a plain OpenCV VideoWriter encode, and peak RSS.

A store of synthetic captures (1280x960 JPEG, quality 90) is made once. Then, in
alternating order, the same photos are encoded by `edge.timelapse.make_timelapse`
(database query, exposure checks, decode, brightness check, date stamp) and by a
bare loop of `cv2.imread` + `cv2.VideoWriter.write` with the same codec, size and
frame rate. Goal: at least 0.8x the bare frame rate. Peak RSS is measured in a
fresh process for a quarter of the range and for all of it: equal peaks show that
memory does not grow with the length of the grow.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import environment, median, print_goal, print_table, render_photo
from edge.store import Store, StoredImage
from edge.timelapse import make_timelapse
from tests.test_store import builder

T0 = datetime(2026, 1, 1, 6, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=10)
DISTINCT = 6  # distinct rendered photos, reused in turn (rendering is the slow part)


def make_store(root: Path, frames: int, width: int, height: int) -> list[Path]:
    """A store with `frames` lights-on captures ten minutes apart; their photo paths."""
    photos = [render_photo(width, height, seed=i, day=8 + 3 * i)[0] for i in range(DISTINCT)]
    store = Store(root, min_free_bytes=0, image_quota_bytes=2**40)
    paths = []
    for i in range(frames):
        obs = store.add_observation(builder(T0 + i * STEP), StoredImage(photo=photos[i % DISTINCT]))
        path = store.image_path(obs.seq)
        assert path is not None
        paths.append(path)
    store.close()
    return paths


def plain_encode(paths: list[Path], out: Path, codec: str, fps: float) -> float:
    """Seconds for imread + VideoWriter.write of every photo: the baseline."""
    began = time.perf_counter()
    first = cv2.imread(str(paths[0]))
    h, w = first.shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*codec), fps, (w, h))
    for path in paths:
        vw.write(cv2.imread(str(path)))
    vw.release()
    return time.perf_counter() - began


def ours(root: Path, frames: int, out: Path) -> tuple[float, str]:
    """Seconds for make_timelapse over the whole store, and the codec it chose."""
    store = Store(root, min_free_bytes=0, image_quota_bytes=2**40)
    began = time.perf_counter()
    result = make_timelapse(store, T0, T0 + (frames - 1) * STEP, out, max_side=4096)
    took = time.perf_counter() - began
    store.close()
    assert result.frames == frames, result.summary()
    return took, result.codec


def child_rss(root: Path, frames: int, out: Path, bare: bool = False) -> int:
    """Peak RSS (MiB) of a fresh process encoding `frames` captures (ours, or the bare loop)."""
    run = (
        "import cv2; from bench.timelapse import plain_encode;"
        "ps = sorted(Path(sys.argv[2]).rglob('*.jpg'))[: int(sys.argv[3])];"
        "plain_encode(ps, Path(sys.argv[4]), 'mp4v', 24.0);"
        if bare
        else "from bench.timelapse import ours; ours(Path(sys.argv[2]), int(sys.argv[3]), "
        "Path(sys.argv[4]));"
    )
    code = (
        "import json, resource, sys; from pathlib import Path;"
        "sys.path.insert(0, sys.argv[1]);"
        + run
        + "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    )
    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code, repo, str(root), str(frames), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(json.loads(done.stdout.strip().splitlines()[-1])) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    args = parser.parse_args()
    print(environment())
    with tempfile.TemporaryDirectory(prefix="bench-timelapse-") as tmp:
        root = Path(tmp) / "data"
        paths = make_store(root, args.frames, args.width, args.height)
        mine: list[float] = []
        bare: list[float] = []
        codec = "mp4v"
        for i in range(args.repeats):
            order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
            for name in order:
                if name == "ours":
                    took, codec = ours(root, args.frames, Path(tmp) / "ours.mp4")
                    mine.append(took)
                else:
                    bare.append(plain_encode(paths, Path(tmp) / "bare.mp4", codec, 24.0))
        quarter = max(1, args.frames // 4)
        rss_quarter = child_rss(root, quarter, Path(tmp) / "q.mp4")
        rss_full = child_rss(root, args.frames, Path(tmp) / "f.mp4")
        rss_bare = child_rss(root, args.frames, Path(tmp) / "b.mp4", bare=True)
        own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    ours_fps, bare_fps = args.frames / median(mine), args.frames / median(bare)
    ratio = ours_fps / bare_fps
    print(f"{args.frames} frames {args.width}x{args.height}, codec {codec}")
    print_table(
        ["encoder", "median s", "frames/s"],
        [
            ["plain OpenCV VideoWriter", f"{median(bare):.2f}", f"{bare_fps:.1f}"],
            ["edge.timelapse", f"{median(mine):.2f}", f"{ours_fps:.1f}"],
        ],
    )
    print_table(
        ["peak RSS (fresh process)", "MiB"],
        [
            [f"edge.timelapse, {quarter} frames", rss_quarter],
            [f"edge.timelapse, {args.frames} frames", rss_full],
            [f"plain VideoWriter, {args.frames} frames", rss_bare],
        ],
    )
    print(f"(this benchmark process itself peaked at {own_rss} MiB)")
    print_goal(f"time-lapse rate >= 0.8x plain VideoWriter (measured {ratio:.2f}x)", ratio >= 0.8)
    print_goal(
        f"peak RSS flat in frame count and within 10 MiB of the plain encoder "
        f"({rss_quarter} -> {rss_full} MiB, plain {rss_bare} MiB)",
        rss_full - rss_quarter <= 10 and rss_full - rss_bare <= 10,
    )
    print_goal(f"peak RSS <= 150 MiB (measured {rss_full} MiB)", rss_full <= 150)


if __name__ == "__main__":
    main()
