"""The collection metrics (docs/monitoring.md#collection-metrics): for every configured collection, what is stored,
how full it is, when its newest version arrived, how often one is expected and which health checks pass.

They come from the shared database and the configuration, so every instance shows the same values. They are
computed in the background every ``interval`` (four queries, whatever the number of collections, and one per
500 collections with a minimumRetention) and rendered once by ``Metrics.show_collections``: a scrape never
waits for the database. Per collection, the window check and the expected interval are computed again only when
their inputs changed or a window opened or closed.

The storage and integrity checks come from the last verification (``--verify``, ``--verify-interval``), not from
looking at the store on every refresh: the collection health endpoint does that, for one collection at a time.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from backup_repository.domain.collections import Collection
from backup_repository.domain.times import utcnow
from backup_repository.domain.versions import retention_blocks_next_upload
from backup_repository.domain.windows import check_latest_backup, expected_interval, next_change
from backup_repository.metrics import Metrics
from backup_repository.services import ports

log = logging.getLogger(__name__)

#: Seconds between two computations (--metrics-refresh-interval).
REFRESH_INTERVAL = 10.0
DAY = timedelta(days=1)


@dataclass(slots=True)
class CollectionFigures:
    collection_id: str
    versions: int
    used_bytes: int
    max_size: int
    max_versions: int
    latest: Optional[float]  # unix seconds
    expected_interval: Optional[float]
    window_ok: int
    size_ok: int
    integrity_ok: int
    storage_ok: int
    verified: Optional[float]  # unix seconds
    undeleted: int = 0  # objects of deleted versions the store has refused to delete (recorded, retried)
    minimum_retention: Optional[float] = None  # seconds; None without a floor
    retention_ok: Optional[int] = None  # 0 while the next upload would be refused for the floor; None without one


class CollectionMonitor:
    def __init__(self, config: ports.Configuration, db: ports.Repository, metrics: Metrics,
                 interval: float = REFRESH_INTERVAL, clock: Callable[[], datetime] = utcnow):
        self._config = config
        self._db = db
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        # collection id -> (collection, latest, window_ok, valid until)
        self._windows: dict[str, tuple[Collection, Optional[datetime], int, Optional[datetime]]] = {}
        # collection id -> (collection, expected interval, valid until)
        self._intervals: dict[str, tuple[Collection, Optional[float], datetime]] = {}
        self._last_duration = 0.0

    async def refresh_once(self) -> None:
        began = time.monotonic()
        stats = await self._db.versions.summaries()
        failing = await self._db.integrity.failing_collections()
        verified = await self._db.integrity.last_verifications()
        kept = await self._db.deletions.refused()
        snapshot = self._config.snapshot
        floored = [key for key, collection in snapshot.collections.items()
                   if collection.minimum_retention is not None]
        versions = await self._db.versions.infos(floored) if floored else {}
        now = self._clock()
        await asyncio.to_thread(self._compute_and_show, snapshot, stats, failing, verified, versions, kept, now)
        self._last_duration = time.monotonic() - began  # shown by the next refresh

    def _compute_and_show(self, snapshot, stats, failing, verified, versions, kept, now):
        """Blocking (croniter, rendering): runs in a thread, one refresh at a time."""
        figures = [self._figures(collection, stats.get(collection_id), failing.get(collection_id, ()),
                                 verified.get(collection_id), versions.get(collection_id, ()),
                                 len(kept.get(collection_id, ())), now)
                   for collection_id, collection in sorted(snapshot.collections.items())]
        for cache in (self._windows, self._intervals):
            for collection_id in [key for key in cache if key not in snapshot.collections]:
                del cache[collection_id]
        self._metrics.sync_collections(snapshot.collections)
        self._metrics.show_collections(figures, time.time(), self._last_duration)

    def _figures(self, collection, stats, problems, verified, versions, kept, now) -> CollectionFigures:
        count, used, latest, largest = stats or (0, 0, None, 0)
        return CollectionFigures(
            collection_id=collection.id, versions=count, used_bytes=used, max_size=collection.max_collection_size,
            max_versions=collection.max_backups_count,
            latest=latest.timestamp() if latest is not None else None,
            expected_interval=self._expected_interval(collection, now),
            window_ok=self._window_ok(collection, latest, now),
            size_ok=int(largest <= collection.max_one_version_size and used <= collection.max_collection_size),
            integrity_ok=int(not any(not message.startswith("missing") for _, _, message in problems)),
            storage_ok=int(not any(message.startswith("missing") for _, _, message in problems)),
            undeleted=kept,
            verified=verified.timestamp() if verified is not None else None,
            minimum_retention=collection.minimum_retention,
            retention_ok=(None if collection.minimum_retention is None
                          else int(retention_blocks_next_upload(collection, versions, now) is None)),
        )

    def _window_ok(self, collection, latest, now) -> int:
        known = self._windows.get(collection.id)
        if known is not None and known[0] is collection and known[1] == latest and (known[3] is None or now < known[3]):
            return known[2]
        ok = int(check_latest_backup(collection.windows, latest, now) is None)
        self._windows[collection.id] = (collection, latest, ok, next_change(collection.windows, now))
        return ok

    def _expected_interval(self, collection, now) -> Optional[float]:
        """Kept for a day: a cron expression's gaps do not change (daylight saving time moves them by an hour)."""
        known = self._intervals.get(collection.id)
        if known is not None and known[0] is collection and now < known[2]:
            return known[1]
        interval = expected_interval(collection.windows, now)
        self._intervals[collection.id] = (collection, interval, now + DAY)
        return interval

    async def run_forever(self) -> None:
        failing_since = None
        while True:
            try:
                await self.refresh_once()
                failing_since = None
            except Exception as exc:  # the database is away: the last figures stay (their refresh time says so)
                if failing_since is None:
                    log.error("collection metrics not refreshed: %s", " ".join(str(exc).split()))
                    failing_since = time.monotonic()
            await asyncio.sleep(self._interval)
