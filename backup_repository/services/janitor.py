"""The janitor: removes what interrupted uploads left in the storage (docs/api.md#upload: nothing partial stays),
and finishes the deletions of rotated versions that the store refused or that a crash cut short
(docs/scaling.md#what-is-guaranteed).

An upload records its object name in ``pending_uploads`` before writing a byte, with a lease that it renews while
it runs (every third of --upload-lease, 45 s by default), and removes the record in the transaction that registers its version — but only
while the record is still its own. The janitor takes over (claims) a record only once its lease has run out, and
a claimed record can no longer be committed: whichever of the two reaches the database first wins, so an object
the janitor deletes is never one whose version was acknowledged, however long a commit stalls. The janitor then
deletes the object (complete or not), aborts the S3 multipart upload, and drops the record; if the store fails,
the claimed record stays and the next pass retries. Records written by servers before leases existed are taken
over once they are older than the upload timeout, as before. Local temporary upload files older than the timeout
are removed as well.

Rotation records each deletion (``pending_deletions``) in the transaction that deletes the version; the janitor
retries those whose object is still there, and drops them once the store confirms it is gone.

Objects that no record and no version refers to (for example the Go server's, in a shared bucket) are never
touched: the janitor only removes what this server knows it wrote. ``--verify`` reports them.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from backup_repository.domain.events import NO_EVENTS, Events
from backup_repository.domain.times import utcnow
from backup_repository.services import ports
from backup_repository.services.deletions import finish_deletion

log = logging.getLogger(__name__)

#: Added to every lease and timeout before the janitor acts (clock differences between servers).
MARGIN_SECONDS = 5.0
#: The holder written into the pending-upload records the janitor has taken over.
CLAIMANT = "janitor"
#: A deletion recorded this recently is left to the rotation that recorded it (were both to try, no harm: a
#: deletion of what is gone already is done).
DELETION_GRACE = 5.0


class Janitor:
    def __init__(self, db: ports.Repository, storage: ports.BlobStore, upload_timeout: float,
                 clock: Callable[[], datetime] = utcnow, events: Events = NO_EVENTS):
        self._events = events
        self._db = db
        self._storage = storage
        self._timeout = upload_timeout + MARGIN_SECONDS
        self._clock = clock

    async def run_once(self) -> int:
        """One pass; returns how many leftovers were removed."""
        now = self._clock()
        removed = 0
        claimed = await self._db.pending_uploads.claim_abandoned(
            CLAIMANT, expired_before=now - timedelta(seconds=MARGIN_SECONDS),
            legacy_started_before=now - timedelta(seconds=self._timeout))
        for name, collection_id in claimed:
            # claimed, the upload can no longer commit: everything under its name goes, however recent
            count = await self._storage.remove_leftovers(name, time.time() + MARGIN_SECONDS)
            if await self._storage.size(name) is not None:  # refused: the record stays, the next pass retries
                log.error("janitor: the store kept %s, the leftover of an interrupted upload to %s; retrying later",
                          name, collection_id)
                continue
            await self._db.pending_uploads.remove(name, CLAIMANT)
            removed += count
            log.warning("janitor: an upload of %s to %s never finished (the server stopped, or lost the database "
                        "or the store for longer than its lease); removed %d leftover object(s)",
                        name, collection_id, count)
        for deletion in await self._db.deletions.recorded_before(now - timedelta(seconds=DELETION_GRACE)):
            if await finish_deletion(self._db, self._storage, deletion.object_name, self._events):
                removed += 1
                log.warning("janitor: deleted %s (v%d of %s), left by a rotation that was cut short or refused "
                            "%d time(s)", deletion.object_name, deletion.version_number, deletion.collection_id,
                            deletion.attempts)
        for name in await self._storage.sweep_temporary(time.time() - self._timeout):
            removed += 1
            log.warning("janitor: removed the temporary upload file %s", name)
        if removed:
            self._events.janitor_removed(removed)
        return removed

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the store or the database is down: try again next time
                log.error("janitor: %s", " ".join(str(exc).split()) or type(exc).__name__)
            await asyncio.sleep(interval)
