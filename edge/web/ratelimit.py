"""Login rate limiting: failed attempts per client address in a sliding window."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_CLIENTS = 4096


class LoginLimiter:
    """Allows `attempts` failures per address per `window_s`; memory-bounded."""

    def __init__(
        self,
        attempts: int,
        window_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._monotonic = monotonic
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may try now."""
        now = self._monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.attempts:
                return 0.0
            return max(0.0, times[0] + self.window_s - now)

    def failed(self, client: str) -> None:
        """Count a failed login from `client`."""
        now = self._monotonic()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget `client`'s failures after a good login."""
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
        return times
