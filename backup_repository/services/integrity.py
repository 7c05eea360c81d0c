"""Integrity verification: re-read every stored version and compare its SHA-256 with the one recorded at upload,
then list the store for objects that nothing accounts for.

Run once with ``backup-repository --verify`` (same database, storage and configuration flags as the server), or
periodically inside the server with ``--verify-interval``. Each result is recorded in the database, so that the
collection health shows failed checks as ``IntegrityValidator``.

Every object this server writes is, at every moment, a version's, a pending upload's or a recorded deletion's
(docs/scaling.md#what-is-guaranteed). An object that none of them accounts for and that is younger than the
database is an orphan: reported, never deleted (it is someone's data). Older objects predate this server's database
(the Go server's, in a shared bucket): counted, not reported.
"""

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from backup_repository.domain.times import utcnow
from backup_repository.domain.versions import Version
from backup_repository.services import ports

log = logging.getLogger(__name__)


@dataclass
class Summary:
    checked: int = 0
    bytes: int = 0
    corrupt: int = 0
    missing: int = 0
    unaccounted: int = 0
    older: int = 0  # objects older than the database that nothing accounts for (another server's)
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> int:
        return self.checked - self.corrupt - self.missing

    def describe(self, seconds: float) -> str:
        text = (f"verified {self.checked} versions ({self.bytes / 2**20:.1f} MiB) in {seconds:.1f}s: "
                f"{self.intact} intact, {self.corrupt} corrupt, {self.missing} missing; "
                f"{self.unaccounted} objects nothing accounts for")
        if self.older:
            text += f" ({self.older} older than this server's database left alone)"
        return text


async def check_version(storage: ports.BlobStore, version: Version) -> str:
    """'' when the stored object is intact, else what is wrong with it."""
    name = version.object_name
    if await storage.size(name) is None:
        return "missing from the storage"
    digest = hashlib.sha256()
    size = 0
    async with aclosing(storage.read(name)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    if size != version.size:
        return f"corrupt: {size} bytes stored, {version.size} expected"
    if digest.hexdigest() != version.sha256:
        return f"corrupt: sha256 is {digest.hexdigest()}, {version.sha256} expected"
    return ""


async def verify_all(db: ports.Repository, storage: ports.BlobStore,
                     report: Optional[Callable[[str], object]] = None,
                     clock: Callable[[], datetime] = utcnow) -> Summary:
    """Check every registered version; ``report(line)`` is called for each problem."""
    summary = Summary()
    for version in await db.versions.all():
        problem = await check_version(storage, version)
        summary.checked += 1
        summary.bytes += version.size
        if problem:
            if problem.startswith("missing"):
                summary.missing += 1
            else:
                summary.corrupt += 1
            line = f"{version.collection_id} v{version.number} ({version.filename}): {problem}"
            summary.problems.append(line)
            if report is not None:
                report(line)
        await db.integrity.record(version, not problem, problem, clock())
    for name in await unaccounted_objects(db, storage, summary):
        summary.unaccounted += 1
        line = (f"{name}: in the storage, but no version, pending upload or recorded deletion accounts for it "
                "(an orphan: check it, then delete it by hand)")
        summary.problems.append(line)
        if report is not None:
            report(line)
    return summary


#: Objects modified this long before the database was created count as older than it (clock differences).
CLOCK_MARGIN = 60.0


async def unaccounted_objects(db: ports.Repository, storage: ports.BlobStore,
                              summary: Optional[Summary] = None) -> list[str]:
    """Names of the objects younger than the database that no version, pending upload or recorded deletion
    accounts for; ``summary.older`` counts those older than it. The store is listed before the records are
    read: an object listed is then accounted for by whatever owns it at that moment, unless it is gone by then."""
    listed = await storage.objects()
    accounted = await db.accounted_names()
    created = await db.created_at()
    since = created.timestamp() - CLOCK_MARGIN if created is not None else 0.0
    found = []
    for name, modified in sorted(listed):
        if name in accounted:
            continue
        if modified < since:
            if summary is not None:
                summary.older += 1
            continue
        if await storage.size(name) is not None:  # not deleted since the listing
            found.append(name)
    return found


async def run_forever(db: ports.Repository, storage: ports.BlobStore, interval: float) -> None:
    """The periodic job of --verify-interval: logs each problem and a summary."""
    while True:
        await asyncio.sleep(interval)
        began = time.monotonic()
        try:
            summary = await verify_all(db, storage, report=lambda line: log.error("integrity: %s", line))
        except Exception as exc:  # the store or the database is down: next time
            log.error("integrity: verification interrupted: %s", " ".join(str(exc).split()))
            continue
        log.info("integrity: %s", summary.describe(time.monotonic() - began))
