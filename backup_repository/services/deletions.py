"""Deleting the object of a version that rotation removed (docs/scaling.md#what-is-guaranteed).

The version's row and a ``pending_deletions`` record of its object are written in one transaction
(db.versions.delete); from then on the record owns the object. ``finish_deletion`` deletes it, and drops the
record only once the store confirms the object is gone; a deletion refused or cut short stays recorded, counted in
its attempts and last error, which the collection's health and metrics report, and the janitor retries it.
"""

import logging

from backup_repository.domain.events import NO_EVENTS, Events
from backup_repository.services import ports

log = logging.getLogger(__name__)


async def finish_deletion(db: ports.Repository, storage: ports.BlobStore, name: str,
                          events: Events = NO_EVENTS) -> bool:
    """Delete the recorded object ``name``; True when it is gone and its record dropped."""
    refusal = await storage.remove(name)
    if refusal is None:
        await db.deletions.done(name)
        return True
    await db.deletions.failed(name, refusal)
    events.deletion_refused()
    log.error("the store kept %s, whose version was deleted: %s; the deletion stays recorded and the janitor "
              "retries it", name, refusal)
    return False
