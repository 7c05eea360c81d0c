"""The status of each BackupCollection for kubectl users (docs/kubernetes.md#status): versions, bytes used, the
latest backup and whether the collection is healthy, written by the server to the resource's status subresource.

The values come from the shared database, so several replicas write the same ones; each writes a collection's
status only when it changed, at most once per ``interval`` — a few writes per collection per minute at most.
A server that may not write status keeps working and says so once. Resources without a status subresource (the
Go server's CRDs) are waited for: one cheap check per interval until the CRDs are upgraded, then every status is
written.
"""

import asyncio
import logging

from backup_repository.process import release_free_memory
from backup_repository.services import ports
from backup_repository.services.collections import CollectionService

log = logging.getLogger(__name__)

#: A pass that wrote at least this many statuses gives the memory it used back to the system.
RELEASE_AFTER = 1000
#: Seconds between two passes (a new backup shows in ``kubectl get backupcollections`` within this).
STATUS_INTERVAL = 10.0


class StatusPublisher:
    def __init__(self, collections: CollectionService, writer: ports.StatusWriter, interval: float = STATUS_INTERVAL):
        self._collections = collections
        # the Kubernetes provider, which shows a CollectionStatus in the resource's own shape
        self._writer = writer
        self._interval = interval
        self._known: dict = {}  # what CollectionService.statuses computed each status from
        self.enabled = True
        self._waiting = False  # for a status subresource

    async def publish_once(self) -> int:
        """Write the statuses that changed; returns how many were written."""
        written = 0
        if self._waiting:
            if not await self._writer.can_show_status():
                return 0
            self._waiting = False
            log.info("status of BackupCollections: the status subresource exists now; writing every status")
        for collection_id, status in (await self._collections.statuses(self._known)).items():
            if self._writer.shows_status(collection_id, status):
                continue  # shown already (written before a restart, or by another replica)
            try:
                allowed = await self._writer.write_status(collection_id, status)
            except BaseException:
                self._known.pop(collection_id, None)  # computed again, and written, next time
                raise
            if allowed is None:
                self._waiting = True
                self._known.clear()  # nothing computed this pass was shown: all of it again once it can be
                log.warning("status of BackupCollections is not written: the BackupCollection CRD has no status "
                            "subresource (the Go server's CRDs?); it is written once the CRDs of "
                            "packaging/kubernetes/crds are installed (docs/kubernetes.md#status)")
                return written
            if not allowed:
                self.enabled = False
                log.warning("status of BackupCollections is off: the identity may not patch "
                            "backupcollections/status (docs/kubernetes.md#status); everything else works")
                return written
            written += 1
        if written >= RELEASE_AFTER:
            release_free_memory()  # the first pass over thousands of collections leaves their garbage behind
        return written

    async def run_forever(self) -> None:
        while self.enabled:
            try:
                await self.publish_once()
            except Exception as exc:  # the API server or the database is away: next time
                log.error("status of BackupCollections not written: %s", " ".join(str(exc).split()))
            await asyncio.sleep(self._interval)
