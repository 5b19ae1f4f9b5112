"""The fleet database at scale: read API query p95 and ingest speed at N rows vs empty.

Generates `--rows` observations with generate_series in a private PostgreSQL (default
durability: fsync and synchronous commit on; the bulk load itself commits
asynchronously), 10,000 devices by default over six weekly partitions, then:

- times the read API's queries (`cloud_bridge.queries.FleetReader`): latest observation
  per device across every device, one room's week, one device's whole grow (paged by
  1,000), the fleet summary; p95 over `--rounds` rounds, another room and device each;
- ingest speed: `FleetStore.write` of 500-observation batches of new captures, into the
  big database and into an empty one in the same cluster, alternating; the ratio;
- prints EXPLAIN ANALYZE of each query (`--plans`).

Run from the repository root: `nice -n 10 python bench/fleet_db_scale.py --rows 50000000`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_bridge.decode import Limits, decode
from cloud_bridge.queries import FleetReader
from cloud_bridge.schema import migrate
from cloud_bridge.store import Envelope, FleetStore
from tests.bridge.factory import observation
from tests.bridge.pg import PgCluster, find_pg_bin
from tests.bridge.scale import (
    Fleet,
    captured_sql,
    device_name,
    explain_text,
    generate,
    now_utc,
    p95,
    read_queries,
    room_of,
    time_queries,
)

LIMITS = Limits(max_payload_bytes=262_144, thumbnail_max_bytes=65_536)
BATCH = 500


def batches(fleet: Fleet, first_seq: int, count: int) -> list[list[Envelope]]:
    """`count` batches of new observations (each device's next seqs), decoded up front."""
    out = []
    for b in range(count):
        batch, seq = [], first_seq + b  # one seq per batch: keys never repeat
        for j in range(BATCH):
            d = (b * BATCH + j) % fleet.devices
            site, room = room_of(d)
            obs = observation(
                device_name(d),
                seq,
                site=site,
                room=room,
                captured_at=fleet.end + timedelta(seconds=seq),
            )
            topic = f"cultivai/v1/{device_name(d)}/observation"
            payload = obs.model_dump_json().encode()
            batch.append(Envelope(topic, payload, now_utc(), decode(topic, payload, LIMITS)))
        out.append(batch)
    return out


def ingest_rate(store: FleetStore, work: list[list[Envelope]]) -> float:
    """Observations per second stored by writing `work` batch by batch."""
    started = time.perf_counter()
    stored = 0
    for batch in work:
        stored += store.write(batch).stored["observation"]
    assert stored == len(work) * BATCH, stored
    return stored / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Generate, measure, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="observations to generate")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--weeks", type=int, default=6)
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per query")
    p.add_argument("--ingest-batches", type=int, default=10, help="batches per ingest run")
    p.add_argument("--plans", action="store_true", help="print EXPLAIN ANALYZE of each query")
    args = p.parse_args(argv)
    pg_bin = find_pg_bin()
    if pg_bin is None:
        print("needs the PostgreSQL server binaries (make system-deps)")
        return 2
    fleet = Fleet(args.devices, max(1, args.rows // args.devices), args.weeks, now_utc())
    cluster = PgCluster(pg_bin, durable=True).init()
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 1GB\nmax_wal_size = 8GB\nmaintenance_work_mem = 512MB\n")
    cluster.start()
    try:
        for name in ("big", "empty"):
            cluster.create_database(name)
            migrate(create_engine(cluster.url(name)))
        big = create_engine(cluster.url("big"), pool_size=2)
        empty = create_engine(cluster.url("empty"), pool_size=2)
        print(
            f"generating {fleet.rows} observations: {fleet.devices} devices x "
            f"{fleet.per_device} over {fleet.weeks} weeks ...",
            flush=True,
        )
        seconds = generate(big, fleet, chunks=10, progress=lambda m: print(m, flush=True))
        with big.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(pg_database_size('big'))")).scalar()
        print(f"generated in {seconds:.0f} s; database size {size}", flush=True)

        reader = FleetReader(big)
        times = time_queries(reader, fleet, args.rounds)
        if args.plans:
            for name, query in read_queries(reader, fleet, 1).items():
                with captured_sql(big) as seen:
                    query()
                statement, params = next(s for s in seen if s[0].lstrip().startswith("SELECT"))
                print(f"\n--- {name}\n{statement}\n{explain_text(big, statement, params)}")

        rates: dict[str, list[float]] = {"big": [], "empty": []}
        stores = {"big": FleetStore(big, 4096), "empty": FleetStore(empty, 4096)}
        seq = fleet.per_device + 1
        for _ in range(3):
            for name in ("empty", "big"):
                work = batches(fleet, seq, args.ingest_batches)
                rates[name].append(ingest_rate(stores[name], work))
            seq += args.ingest_batches
        big.dispose()
        empty.dispose()
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.root, ignore_errors=True)

    print(f"\n{fleet.rows} observations, {fleet.devices} devices, {fleet.weeks} weekly partitions")
    print(f"{'query':28} {'p50 ms':>9} {'p95 ms':>9}   (goal p95 <= 100 ms)")
    for name, samples in times.items():
        verdict = "met" if p95(samples) <= 100 else "not met"
        print(f"{name:28} {statistics.median(samples):9.1f} {p95(samples):9.1f}   {verdict}")
    big_rate, empty_rate = statistics.median(rates["big"]), statistics.median(rates["empty"])
    ratio = big_rate / empty_rate
    print(f"ingest into the empty database   {empty_rate:9.0f} obs/s (median of 3)")
    print(f"ingest at {fleet.rows:>11} rows     {big_rate:9.0f} obs/s (median of 3)")
    print(f"at size / empty                  {ratio:9.2f}x   (goal >= 0.9x)", end=" ")
    print("met" if ratio >= 0.9 else "not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
