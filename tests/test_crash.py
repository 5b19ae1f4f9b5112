"""Crash safety and clean shutdown of real agent processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge.store import Store

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not seen before the process ended or timed out")


def test_kill_9_while_capturing_never_corrupts_or_loses_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(1234)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_driver", str(data)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        _wait_for_line(proc, "ready")
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    store = Store(data)  # a restart
    try:
        assert store.integrity_check() == "ok"
        seqs = store.seqs()
        assert len(seqs) > 20
        assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no repeats
        for seq in seqs:
            for overlay in (False, True):
                path = store.image_path(seq, overlay=overlay)
                assert path is None or path.is_file(), f"seq {seq} points to a missing photo"
        kept = {p for s in seqs for p in (store.image_path(s), store.image_path(s, True)) if p}
        on_disk = {p for p in (data / "images").rglob("*") if p.is_file()}
        assert kept <= on_disk
    finally:
        store.close()
    # What a kill left half-done (a photo whose row never committed, a temp file) is
    # removed at a later start, once no other process can still be writing it.
    for path in on_disk - kept:
        os.utime(path, (time.time() - 3600,) * 2)
    store = Store(data)
    try:
        on_disk = {p for p in (data / "images").rglob("*") if p.is_file()}
        assert on_disk == kept
        assert not list(data.rglob(".tmp-*"))
    finally:
        store.close()


def test_sigterm_stops_the_agent_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "term-test"},
                "camera": {"backend": "synthetic", "width": 320, "height": 240},
                "schedule": {"interval_s": 1},
                "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
                "model": {"enabled": False},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "observation stored" in proc.stderr.readline():
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert '"agent stopped"' in err and "SIGTERM" in err
    store = Store(tmp_path / "data")
    assert store.stats().observations >= 1
    store.close()
