"""The running bridge: every part wired in boot order, and an orderly shutdown.

Threads: the network thread owns the broker session; the writer thread owns batching
and commits; the gap filler scans for seq holes; waitress serves HTTP. Shutdown runs in
the reverse direction of the data: the writer finishes (or abandons, if the database is
down) its batch first, then the network thread sends the last acknowledgements and
disconnects, leaving the broker session, and everything not yet acknowledged in it, for
the next start.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine, text

from cloud_bridge.api import create_app
from cloud_bridge.broker import BrokerLink, Inbound, bridge_topics
from cloud_bridge.config import BridgeConfig, read_secret
from cloud_bridge.database import open_engine, open_read_engine, replica_lag_s
from cloud_bridge.decode import KINDS, Limits
from cloud_bridge.errors import BridgeError
from cloud_bridge.gaps import GapFiller
from cloud_bridge.guard import Limiter, RateLimiter, SharedRateLimiter
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.partitions import run_maintenance
from cloud_bridge.queries import FleetReader
from cloud_bridge.schema import require_current
from cloud_bridge.store import FleetStore
from cloud_bridge.writer import BatchWriter

log = logging.getLogger("cloud_bridge.service")


class Bridge:
    """One bridge process: `start()`, then `stop()` (or `run_until()` a stop event)."""

    def __init__(self, config: BridgeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine
        self._owns_engine = engine is None
        self.read_engine: Engine | None = None
        self._replica: dict[str, Any] = {}
        self.metrics = BridgeMetrics()
        self.link: BrokerLink | None = None
        self.writer: BatchWriter | None = None
        self.http_port: int | None = None
        self._server: Any = None
        self._stop_writer = threading.Event()
        self._stop_link = threading.Event()
        self._stop_gaps = threading.Event()
        self._stop_partitions = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    def start(self) -> Bridge:
        """Open the database, check its schema, bind HTTP, start writer, broker, gaps, HTTP."""
        c = self.config
        if self.engine is None:
            self.engine = open_engine(c.database)
        require_current(self.engine)
        self.read_engine = open_read_engine(c.database)
        if c.http.enabled:
            self._bind_http()
        store = FleetStore(self.engine, dead_letter_max_bytes=c.batching.max_payload_bytes)
        limits = Limits(c.batching.max_payload_bytes, c.thumbnails.max_bytes)
        kinds = [k for k in KINDS if k != "thumbnail" or c.thumbnails.enabled]
        self.link = BrokerLink(c.mqtt, bridge_topics(kinds), self._deliver)
        self.writer = BatchWriter(
            store, limits, c.batching, c.database.retry_max_s, self.link.ack, self.metrics
        )
        self._spawn("writer", self.writer.run, self._stop_writer)
        self._spawn("broker", self.link.run, self._stop_link)
        if c.gaps.enabled:
            gaps = GapFiller(self.engine, c.gaps, self._publish, self.metrics)
            self._spawn("gaps", gaps.run, self._stop_gaps)
        d = c.database
        self._spawn(
            "partitions",
            lambda stop: run_maintenance(
                self.engine_or_fail, d.partitions_ahead_weeks, d.retention_days, stop
            ),
            self._stop_partitions,
        )
        if self._server is not None:
            threading.Thread(target=self._server.run, name="bridge-http", daemon=True).start()
        log.info(
            "bridge started",
            extra={
                "client_id": c.mqtt.client_id,
                "database": self.engine.url.render_as_string(hide_password=True),
                "http_port": self.http_port,
            },
        )
        return self

    def _deliver(self, message: Inbound) -> None:
        assert self.writer is not None
        self.writer.put(message)

    def _publish(self, topic: str, payload: bytes) -> None:
        assert self.link is not None
        self.link.publish(topic, payload, qos=1)

    def _spawn(self, name: str, target: Any, stop: threading.Event) -> None:
        thread = threading.Thread(target=target, args=(stop,), name=f"bridge-{name}", daemon=True)
        thread.start()
        self._threads[name] = thread

    def _bind_http(self) -> None:
        from waitress.server import create_server

        c = self.config.http
        token = read_secret(c.token_file, "HTTP token") if c.token_file else None
        if token is None:
            log.warning("http.token_file is not set: /api and /metrics refuse every request")
        checks = {"database": self.check_database, "broker": self.check_broker}
        if self.read_engine is not None:
            checks["replica"] = self.check_replica
        app = create_app(
            FleetReader(self.read_engine or self.engine_or_fail),
            checks,
            self.metrics.registry,
            token,
            self._limiter(),
            c.cors_origins,
            c.max_request_bytes,
            c.max_url_bytes,
            details=(lambda: {"replica": dict(self._replica)})
            if self.read_engine is not None
            else None,
        )
        try:
            # waitress's own limits sit above the app's, so the app answers (with its
            # headers) first.
            self._server = create_server(
                app,
                host=c.host,
                port=c.port,
                threads=c.threads,
                max_request_body_size=c.max_request_bytes + 65_536,
                max_request_header_size=c.max_url_bytes + 65_536,
            )
        except OSError as exc:
            raise BridgeError(f"cannot listen on {c.host}:{c.port}: {exc}") from None
        self.http_port = int(self._server.effective_port)

    def _limiter(self) -> Limiter:
        """One budget per client for all replicas (PostgreSQL), else per process."""
        c = self.config.http
        local = RateLimiter(c.rate_limit_per_minute)
        if c.shared_rate_limit and self.engine_or_fail.dialect.name == "postgresql":
            return SharedRateLimiter(self.engine_or_fail, c.rate_limit_per_minute, local)
        return local

    @property
    def engine_or_fail(self) -> Engine:
        """The engine; only valid after start()."""
        if self.engine is None:
            raise BridgeError("bridge not started")
        return self.engine

    def check_database(self) -> str | None:
        """None if the database answers, else why not."""
        try:
            with self.engine_or_fail.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            return f"unreachable: {str(exc).splitlines()[0][:200]}"
        return None

    def check_replica(self) -> str | None:
        """None if the read replica answers and keeps up within `read_max_lag_s`."""
        assert self.read_engine is not None
        limit = self.config.database.read_max_lag_s
        try:
            lag, standby = replica_lag_s(self.read_engine)
        except Exception as exc:
            self._replica = {"lag_s": None, "standby": None}
            return f"unreachable: {str(exc).splitlines()[0][:200]}"
        if lag is None:  # behind, but nothing replayed yet to date it: unknown, not 0
            self._replica = {"lag_s": None, "standby": standby}
            return None
        self._replica = {"lag_s": round(lag, 3), "standby": standby}
        self.metrics.replica_lag.set(lag)
        if lag > limit:
            return f"replays {lag:.1f} s behind the primary (database.read_max_lag_s {limit:g})"
        return None

    def check_broker(self) -> str | None:
        """None if connected and subscribed, else why not."""
        if self.link is not None and self.link.ready:
            self.metrics.broker_up.set(1)
            return None
        self.metrics.broker_up.set(0)
        return "not connected and subscribed"

    def failed(self) -> str | None:
        """Which worker thread died, if any (the process should then exit and be restarted)."""
        for name, thread in self._threads.items():
            if not thread.is_alive() and not self._stop_writer.is_set():
                return name
        return None

    def run_until(self, stop: threading.Event) -> int:
        """Run until `stop` is set (0) or a worker dies (1); then shut down."""
        while not stop.wait(0.5):
            self.check_broker()
            dead = self.failed()
            if dead is not None:
                log.error("a bridge thread stopped; exiting", extra={"worker": dead})
                self.stop()
                return 1
        self.stop()
        return 0

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, send its acks, disconnect, stop serving."""
        self._stop_gaps.set()
        self._stop_partitions.set()
        self._stop_writer.set()
        writer = self._threads.get("writer")
        if writer is not None:
            writer.join(timeout)
        self._stop_link.set()
        if self.link is not None:
            self.link.wake()
        for name in ("broker", "gaps", "partitions"):
            thread = self._threads.get(name)
            if thread is not None:
                thread.join(timeout)
        if self._server is not None:
            self._server.task_dispatcher.shutdown(timeout=2)
            self._server.close()
            self._server = None
        if self._owns_engine and self.engine is not None:
            self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()
        log.info("bridge stopped")
