"""Login rate limiting: attempts per client address, and for all addresses together.

An attempt is counted when it starts (`begin`), before the slow password check, so
parallel guesses cannot all pass the check-then-count gap; a good login hands its
attempt back. Beyond the per-address window, all failures together have a global limit:
each time it trips, logins pause for a back-off that doubles (to `max_backoff_s`), so
many addresses cannot add up to many guesses.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_CLIENTS = 4096
GLOBAL_FACTOR = 4  # the global limit is this many addresses' worth of attempts
MAX_BACKOFF_S = 3600.0


class LoginLimiter:
    """Allows `attempts` per address and `global_attempts` in all per `window_s`."""

    def __init__(
        self,
        attempts: int,
        window_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
        global_attempts: int | None = None,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.global_attempts = global_attempts or attempts * GLOBAL_FACTOR
        self._monotonic = monotonic
        self._max_clients = max_clients
        self._max_backoff_s = max_backoff_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()
        self._paused_until = 0.0
        self._backoff_s = window_s
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may try now."""
        with self._lock:
            return self._wait(client, self._monotonic())

    def begin(self, client: str) -> float:
        """Count an attempt by `client` now; returns 0, or the seconds to wait (not counted)."""
        now = self._monotonic()
        with self._lock:
            wait = self._wait(client, now)
            if wait > 0:
                return wait
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
            self._all.append(now)
            if len(self._all) >= self.global_attempts:
                # Too many attempts from everywhere: pause all logins, longer each time.
                self._paused_until = now + self._backoff_s
                self._backoff_s = min(self._backoff_s * 2, self._max_backoff_s)
                self._all.clear()
            return 0.0

    def succeeded(self, client: str) -> None:
        """A good login: forget `client`'s attempts and reset the global back-off."""
        with self._lock:
            times = self._failures.pop(client, None)
            if times:
                self._forget_one_global(times[-1])
            self._backoff_s = self.window_s

    def _forget_one_global(self, at: float) -> None:
        with contextlib.suppress(ValueError):  # already out of the window, or cleared
            self._all.remove(at)

    def _wait(self, client: str, now: float) -> float:
        while self._all and self._all[0] <= now - self.window_s:
            self._all.popleft()
        paused = max(0.0, self._paused_until - now)
        times = self._recent(client, now)
        mine = 0.0 if len(times) < self.attempts else times[0] + self.window_s - now
        return max(paused, mine, 0.0)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
        return times
