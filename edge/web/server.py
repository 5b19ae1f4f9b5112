"""Serves the page with waitress in a daemon thread, inside the agent's process.

Plain HTTP only: waitress has no TLS. For HTTPS, run a reverse proxy on the device
(nginx or Caddy) that terminates TLS and forwards to 127.0.0.1, and set
`web.behind_tls_proxy` (see README).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)


class WebServer:
    """A WSGI app served by waitress; `port` is the bound port once started (0: any free)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 4) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.threads = threads
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        """Bind the port and serve in the background."""
        self._server = create_server(
            self.app,
            host=self.host,
            port=self.port,
            threads=self.threads,
            ident="cultivai",
            # The app applies X-Forwarded-* itself, and only when behind_tls_proxy is set.
            clear_untrusted_proxy_headers=False,
            channel_timeout=30,
        )
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        log.info("status page listening", extra={"url": self.url})
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and open connections, then end the worker threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        # The socket map belongs to the server's loop thread: close everything from there.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
        thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)
        self._server = self._thread = None
        log.info("status page stopped")
