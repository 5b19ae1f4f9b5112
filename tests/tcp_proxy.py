"""A loopback TCP proxy that can stall one direction and cut every connection.

Put between a client and a real broker, it makes the network faults a device meets:
a link that stops carrying data (the client's socket buffers fill, so its MQTT
library keeps messages unsent) and a link that drops.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from tests.mqtt_broker import free_port


class StallingProxy:
    """Forwards 127.0.0.1:port to an upstream port; `stall()` stops client-to-upstream data."""

    def __init__(self, upstream_port: int) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._upstream = upstream_port
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server((self.host, self.port))
        self._listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    def stall(self) -> None:
        """Stop reading what the client sends (it piles up in the socket buffers)."""
        self._stalled.set()

    def cut(self) -> None:
        """Close every connection now and carry data freely for the next ones."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._stalled.clear()

    def close(self) -> None:
        """Stop accepting and cut what is open."""
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self._upstream), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, stallable in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, stallable), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, stallable: bool) -> None:
        while not self._stop.is_set():
            if stallable and self._stalled.is_set():
                time.sleep(0.05)
                if src.fileno() < 0:
                    return
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except (OSError, ValueError):
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
