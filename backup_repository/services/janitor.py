"""The janitor: removes what interrupted uploads left in the storage (docs/api.md#upload: nothing partial stays).

An upload records its object name in ``pending_uploads`` before writing a byte and removes the record when its
version is registered or the upload is abandoned cleanly. A record older than the upload timeout therefore belongs
to an upload that can no longer be running (its server crashed or lost the store): the janitor deletes the object
(complete or not), aborts the S3 multipart upload, and drops the record. Local temporary upload files older than
the timeout are removed as well.

Objects that no record and no version refers to (for example the Go server's, in a shared bucket) are never
touched: the janitor only removes what this server knows it wrote.
"""

import asyncio
import logging
import time
from datetime import timedelta

from backup_repository.domain.events import NO_EVENTS
from backup_repository.domain.times import utcnow

log = logging.getLogger(__name__)

#: Added to the upload timeout before a pending upload is considered dead (clock differences between servers).
MARGIN_SECONDS = 5.0


class Janitor:
    def __init__(self, db, storage, upload_timeout: float, clock=utcnow, events=NO_EVENTS):
        self._events = events
        self._db = db
        self._storage = storage
        self._timeout = upload_timeout + MARGIN_SECONDS
        self._clock = clock

    async def run_once(self) -> int:
        """One pass; returns how many leftovers were removed."""
        cutoff = self._clock() - timedelta(seconds=self._timeout)
        cutoff_epoch = time.time() - self._timeout
        removed = 0
        for name, collection_id in await self._db.stale_pending_uploads(cutoff):
            count = await self._storage.remove_leftovers(name, cutoff_epoch)
            await self._db.remove_pending_upload(name)
            removed += count
            log.warning("janitor: an upload of %s to %s never finished (the server stopped or lost the store); "
                        "removed %d leftover object(s)", name, collection_id, count)
        for name in await self._storage.sweep_temporary(cutoff_epoch):
            removed += 1
            log.warning("janitor: removed the temporary upload file %s", name)
        if removed:
            self._events.janitor_removed(removed)
        return removed

    async def run_forever(self, interval: float):
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the store or the database is down: try again next time
                log.error("janitor: %s", " ".join(str(exc).split()) or type(exc).__name__)
            await asyncio.sleep(interval)
