"""The page served for real by waitress in a background thread."""

from __future__ import annotations

import http.client
import socket

import pytest
from flask import Flask

from edge.web.server import WebServer


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_serves_on_a_free_port_and_stops_cleanly(app: Flask) -> None:
    server = WebServer(app, host="127.0.0.1", port=0).start()
    assert server.port > 0
    status, body = get(server.port, "/healthz")
    assert (status, body) == (200, b'{"ok":true}\n')
    assert get(server.port, "/")[0] == 302
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    server.stop()  # a second stop is harmless


def test_stop_closes_idle_keep_alive_connections(app: Flask) -> None:
    server = WebServer(app, host="127.0.0.1", port=0).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    server.stop()
    assert server._thread is None
    conn.close()
