"""The status of each BackupCollection for kubectl users (docs/kubernetes.md#status): versions, bytes used, the
latest backup and whether the collection is healthy, written by the server to the resource's status subresource.

The values come from the shared database, so several replicas write the same ones; each writes a collection's
status only when it changed, at most once per ``interval`` — a few writes per collection per minute at most.
A server that may not write status keeps working and says so once.
"""

import asyncio
import logging

log = logging.getLogger(__name__)

#: Seconds between two passes (a new backup shows in ``kubectl get backupcollections`` within this).
STATUS_INTERVAL = 10.0


class StatusPublisher:
    def __init__(self, collections, writer, interval: float = STATUS_INTERVAL):
        self._collections = collections  # services.collections.CollectionService
        self._writer = writer  # has write_status(collection_id, status) -> bool (the Kubernetes provider)
        self._interval = interval
        self._written = {}  # collection id -> the status last written
        self.enabled = True

    async def publish_once(self) -> int:
        """Write the statuses that changed; returns how many were written."""
        written = 0
        for collection_id, status in (await self._collections.statuses()).items():
            if self._written.get(collection_id) == status:
                continue
            if not await self._writer.write_status(collection_id, status):
                self.enabled = False
                log.warning("status of BackupCollections is off: the identity may not patch "
                            "backupcollections/status (docs/kubernetes.md#status); everything else works")
                return written
            self._written[collection_id] = status
            written += 1
        return written

    async def run_forever(self):
        while self.enabled:
            try:
                await self.publish_once()
            except Exception as exc:  # the API server or the database is away: next time
                log.error("status of BackupCollections not written: %s", " ".join(str(exc).split()))
            await asyncio.sleep(self._interval)
