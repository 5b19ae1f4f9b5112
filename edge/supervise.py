"""Worker threads that come back: a loop that raises is logged, counted and restarted.

Each worker's loop is expected to handle its own errors; the supervisor is the last line,
for the bug nobody foresaw. A restart is never silent: it is logged with the traceback,
counted in `cultivai_worker_restarts_total`, and `cultivai_worker_up` is 0 while the
worker waits out its back-off (readiness reports it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0


@dataclass
class WorkerState:
    """What a worker has been through since it started."""

    name: str
    up: bool = False
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    """Starts worker loops on daemon threads and restarts a loop that dies."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        r = registry or CollectorRegistry()
        self._restarts = Counter(
            "cultivai_worker_restarts",
            "Worker threads restarted after an unexpected error, by worker.",
            ["worker"],
            registry=r,
        )
        self._up = Gauge(
            "cultivai_worker_up",
            "1 while a worker thread is running, by worker.",
            ["worker"],
            registry=r,
        )
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.workers: dict[str, WorkerState] = {}

    def start(self, name: str, loop: Callable[[], None]) -> threading.Thread:
        """Run `loop` on a thread named `name`; it ends when `loop` returns."""
        state = WorkerState(name)
        with self._lock:
            self.workers[name] = state
        self._restarts.labels(worker=name)
        thread = threading.Thread(target=self._run, args=(state, loop), name=name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Do not restart any worker from now on (workers end through their own signal)."""
        self._stopping.set()

    def problems(self) -> list[str]:
        """One line per worker that is down or has been restarted; empty when all is well."""
        with self._lock:
            states = list(self.workers.values())
        out = []
        for s in states:
            if not s.up and not self._stopping.is_set():
                out.append(f"{s.name} worker is down (last error: {s.last_error})")
            elif s.restarts:
                out.append(f"{s.name} worker restarted {s.restarts}x (last: {s.last_error})")
        return out

    def all_up(self) -> bool:
        """True when every worker that should run is running."""
        with self._lock:
            return all(s.up for s in self.workers.values()) or self._stopping.is_set()

    def _run(self, state: WorkerState, loop: Callable[[], None]) -> None:
        backoff = self._first_backoff_s
        while True:
            self._set_up(state, True)
            try:
                loop()
            except Exception as exc:  # the last line: log, count, restart instead of dying
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self._set_up(state, False)
                self._restarts.labels(worker=state.name).inc()
                log.exception(
                    "worker died; restarting",
                    extra={"worker": state.name, "restarts": state.restarts, "in_s": backoff},
                )
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self._set_up(state, False)
            with self._lock:
                del self.workers[state.name]  # ended on purpose: nothing to report
            return

    def _set_up(self, state: WorkerState, up: bool) -> None:
        state.up = up
        self._up.labels(worker=state.name).set(1 if up else 0)
