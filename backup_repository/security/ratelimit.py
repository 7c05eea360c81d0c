"""Request rate limits per client address (docs/configuration.md#command-line): a token bucket per (endpoint
class, address). An IPv6 client is one address per ``--rate-ipv6-prefix`` network (/64 by default): any host holds
a whole /64, and a budget per exact address would give each of its 2**64 addresses a fresh one. An IPv4 client is
its address (an IPv4-mapped IPv6 address too).

A bucket holds ``limit`` tokens and refills ``limit`` tokens per ``period``. The table is bounded: it keeps at
most ``max_entries`` addresses per class, dropping the least recently seen first, so a flood of distinct
addresses cannot grow memory without limit (a dropped address simply starts again with a full bucket).

Each request learns what it left of its budget (``Budget``): the HTTP layer shows it in the ``X-RateLimit-*``
headers (docs/api.md#rate-limits).
"""

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

#: Endpoint classes and the settings that hold their limits: (setting, period in seconds).
CLASSES = {
    "default": ("rate_default_limit", 1.0),
    "auth": ("rate_auth_limit", 60.0),
    "collection_health": ("rate_collection_health_limit", 60.0),
    "server_health": ("rate_server_health_limit", 60.0),
}
MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class Budget:
    """What one request found of its client's budget.

    ``limit`` requests per period; ``remaining`` whole requests left after this one (0 when it was refused);
    ``full_in`` seconds until the bucket holds ``limit`` again; ``retry_after`` seconds until the next request is
    allowed when this one was refused, None when it was allowed.
    """

    limit: int
    remaining: int
    full_in: float
    retry_after: Optional[float] = None

    @property
    def allowed(self) -> bool:
        return self.retry_after is None


class RateLimiter:
    def __init__(self, limit: int, period: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.limit = limit
        self.period = period
        self.max_entries = max_entries
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, last update)

    def __len__(self):
        return len(self._buckets)

    def hit(self, address: str) -> Budget:
        """Take one token: the budget left, with ``retry_after`` set when there was no token to take."""
        now = self._clock()
        rate = self.limit / self.period
        tokens, last = self._buckets.pop(address, (float(self.limit), now))
        tokens = min(float(self.limit), tokens + (now - last) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            retry = None
        else:
            retry = (1.0 - tokens) / rate
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_entries:
            self._buckets.popitem(last=False)
        return Budget(self.limit, math.floor(tokens + 1e-9), (self.limit - tokens) / rate, retry)


def budget_key(address: str, ipv6_prefix: int = 64) -> str:
    """The budget an address draws from: an IPv6 address's /``ipv6_prefix`` network (``2001:db8:1:2::/64``), an
    IPv4 address itself; anything unparsable as it is."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/{ipv6_prefix}", strict=False))


class RateLimits:
    """One limiter per endpoint class, built from the settings."""

    def __init__(self, settings, max_entries: int = MAX_ENTRIES):
        self.ipv6_prefix = getattr(settings, "rate_ipv6_prefix", 64)
        self._limiters = {
            name: RateLimiter(getattr(settings, setting), period, max_entries)
            for name, (setting, period) in CLASSES.items()
        }

    def key(self, address: str) -> str:
        return budget_key(address, self.ipv6_prefix)

    def hit(self, endpoint_class: str, address: str) -> Budget:
        return self._limiters[endpoint_class].hit(self.key(address))
