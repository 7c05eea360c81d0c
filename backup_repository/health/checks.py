"""Health checks: each is a name and an async callable that raises when the check fails."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one named check (the API shows it as http/presenters/health.py writes it)."""

    name: str
    ok: bool
    message: str


async def run_checks(checks) -> list:
    """Run ``(name, coroutine function)`` pairs concurrently; a raised exception fails that check only."""

    async def one(name, check):
        try:
            await check()
        except Exception as exc:  # any failure is reported, never raised to the client
            message = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("health check %s failed: %s", name, message)
            return CheckResult(name, False, message)
        return CheckResult(name, True, "OK")

    return list(await asyncio.gather(*(one(name, check) for name, check in checks)))


#: How long a storage check's result (pass or failure) answers every /ready, on every listener
#: (docs/api.md#health): a round trip writes, reads and deletes an object (3 to 4 billed calls on S3), so N
#: requests a second must not cost N of them.
STORAGE_CHECK_REUSE = 5.0


class SharedCheck:
    """A check whose outcome every caller shares: reused for ``reuse`` seconds after it ends, and callers that come
    while it runs wait for that run instead of starting another."""

    def __init__(self, check, reuse: float, clock=time.monotonic):
        self._check = check
        self._reuse = reuse
        self._clock = clock
        self._running: Optional[asyncio.Future] = None
        self._ended_at: Optional[float] = None
        self._failure: Optional[Exception] = None

    async def __call__(self):
        if self._ended_at is None or self._clock() - self._ended_at >= self._reuse:
            if self._running is None:
                self._running = asyncio.ensure_future(self._run())
            await asyncio.shield(self._running)
        if self._failure is not None:
            raise self._failure

    async def _run(self):
        try:
            await self._check()
            self._failure = None
        except Exception as exc:  # kept and raised to every caller until the next run
            self._failure = exc
        finally:
            self._ended_at = self._clock()
            self._running = None


def readiness_checks(db, storage, config, storage_timeout: float) -> list:
    """The three checks of ``/ready``, each given just what it checks; the storage round trip is shared
    (STORAGE_CHECK_REUSE)."""

    async def database():
        await db.ping()

    async def round_trip():
        await storage.health_check(storage_timeout)

    store = SharedCheck(round_trip, STORAGE_CHECK_REUSE)

    async def configuration():
        try:
            await asyncio.get_running_loop().run_in_executor(None, config.check)
        except OSError as exc:
            raise RuntimeError(f"configuration provider is not usable: {exc}") from None

    return [
        ("DbValidator", database),
        ("StorageAvailabilityValidator", store),
        ("ConfigurationProviderValidator", configuration),
    ]
