"""Health checks: each is a name and an async callable that raises when the check fails."""

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.ok,
            "statusText": f"{self.name}={'true' if self.ok else 'false'}",
            "message": self.message,
        }


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


def readiness_checks(db, storage, config, storage_timeout: float) -> list:
    """The three checks of ``/ready``, each given just what it checks."""

    async def database():
        await db.ping()

    async def store():
        await storage.health_check(storage_timeout)

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
