"""The batch's rate limiter: never more than ``max_per_second`` send starts in any one-second window."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

#: Seconds added to the limiter's one-second window. 20 ms was too little: four tasks at 100 msg/s each, on the
#: production-like stack's two busy cores, once put 408 requests into one second at the sandbox (the grants' spacing
#: held; their arrivals spread by about 40 ms more than the margin). 50 ms absorbs that for 5% of the throughput.
DEFAULT_MARGIN = 0.05


class RateLimiter:
    """
    At most ``max_per_second`` grants in any one-second window, spread evenly.

    Grant ``i`` is scheduled ``1/rate`` after grant ``i-1``'s slot (at most one interval is made up after a
    stall), and on top of that is never given less than ``1 s + margin`` after the grant ``rate`` places before
    it (a sliding window over the *actual* grant times), so the limit holds for any window even when threads
    wake late. The margin absorbs the jitter between a grant and the moment the request reaches the vendor
    (thread hand-over, building the request, the network): it costs ``margin`` per second of sending (5% by
    default, :data:`DEFAULT_MARGIN`).
    Thread-safe. Clock and sleep are injectable for tests.

    :param max_per_second: The rate, > 0.
    :param margin: Seconds added to the one-second window (default :data:`DEFAULT_MARGIN`).
    :param clock: Monotonic seconds (default :func:`time.monotonic`).
    :param sleep: Sleeps a number of seconds (default :func:`time.sleep`).
    """

    def __init__(
        self,
        max_per_second: float,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(max_per_second, bool) or not max_per_second > 0:
            raise ValueError(f"max_per_second must be a positive number, got {max_per_second!r}")
        self.rate = float(max_per_second)
        self.interval = 1.0 / self.rate
        self.window = 1.0 + margin
        self._window_size = max(1, int(self.rate))  # grants allowed in a one-second window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None  # the next grant's scheduled time
        self._recent: collections.deque[float] = collections.deque(maxlen=self._window_size)

    def acquire(self) -> float:
        """Block until a send may start; return the (clock) time it was granted."""
        while True:
            with self._lock:
                now = self._clock()
                earliest = now if self._next is None else self._next
                if len(self._recent) == self._window_size:
                    earliest = max(earliest, self._recent[0] + self.window)
                if now >= earliest:
                    # keep to the ideal schedule (small wake-up delays do not add up), but give back at most
                    # one interval after a stall
                    base = now if self._next is None else max(self._next, now - self.interval)
                    self._next = base + self.interval
                    self._recent.append(now)
                    return now
                wait = earliest - now
            self._sleep(wait)
