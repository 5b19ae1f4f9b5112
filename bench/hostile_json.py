"""Bridge write throughput with six deeply nested observations among 3,000, against clean.

Six payloads nested `--levels` deep (default 990, just under Python's recursion limit)
among 3,000 must not slow ingest: the decoder refuses them by a scan before parsing,
so they become dead letters and their batches commit whole. Both cases go through the
real `BatchWriter` and a private PostgreSQL, alternating; reported are medians and the
ratio. Run from the repository root: `python bench/hostile_json.py` (`--repeats N`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine

from cloud_bridge.broker import Inbound
from cloud_bridge.config import BatchingConfig
from cloud_bridge.decode import Limits
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.schema import migrate
from cloud_bridge.store import FleetStore
from cloud_bridge.writer import BatchWriter
from tests.bridge.factory import observation_message
from tests.bridge.pg import PgCluster, find_pg_bin

MESSAGES, BATCH, DEEP_EVERY, LEVELS = 3000, 500, 500, 990


def messages(device: str, hostile: bool, levels: int = LEVELS) -> list[Inbound]:
    """3,000 observations; when `hostile`, every 500th carries a `levels`-deep extra field."""
    out = []
    for seq in range(1, MESSAGES + 1):
        topic, payload = observation_message(device, seq)
        if hostile and seq % DEEP_EVERY == 0:
            payload = payload[:-1] + b', "x": ' + b"[" * levels + b"]" * levels + b"}"
        now = datetime.now(timezone.utc)
        out.append(Inbound(topic, payload, 1, seq, 1, time.monotonic(), now))
    return out


def timed(writer: BatchWriter, batch: list[Inbound]) -> float:
    """Seconds to commit `batch` in writer-sized chunks."""
    stop = threading.Event()
    started = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        writer._commit(batch[i : i + BATCH], stop)
    return time.perf_counter() - started


def main() -> None:
    """Run both cases alternately and print medians, ratio and the goal line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", type=int, default=LEVELS, help="nesting of the six")
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (make system-deps installs them)")
    cluster = PgCluster(bin_dir).init().start()
    try:
        cluster.create_database("bench")
        engine = create_engine(cluster.url("bench"))
        migrate(engine)
        writer = BatchWriter(
            FleetStore(engine, 1024),
            Limits(262_144, 65_536),
            BatchingConfig(),
            1.0,
            lambda _done: None,
            BridgeMetrics(),
        )
        times: dict[str, list[float]] = {"clean": [], "hostile": []}
        for run in range(args.repeats):
            order = ("clean", "hostile") if run % 2 == 0 else ("hostile", "clean")
            for case in order:
                batch = messages(f"{case}-{run}", case == "hostile", args.levels)
                times[case].append(timed(writer, batch))
        clean, hostile = (statistics.median(times[c]) for c in ("clean", "hostile"))
        print(f"{'case':<10}{'median s':>10}{'msgs/s':>10}")
        for case, value in (("clean", clean), ("hostile", hostile)):
            print(f"{case:<10}{value:>10.3f}{MESSAGES / value:>10.0f}")
        ratio = hostile / clean
        print(f"hostile/clean: {ratio:.2f}x")
        print(f"goal hostile/clean <= 1.5: {'met' if ratio <= 1.5 else 'not met'}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
