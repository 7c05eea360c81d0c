"""Uploads of new versions (docs/api.md#upload): the checks before the body, the commit after it, and the clean-up
after any failure.

``UploadService.begin()`` runs every check that needs no body byte — collection, permission, backup window, the
collection's upload lock, the size budget — then reserves the version number and opens the object writer.
``Upload.feed()`` passes each body chunk through the body rules (domain/uploads.py) into the writer;
``Upload.complete()`` registers the version once the body is stored and rotates out what the strategy says;
``Upload.abort()`` removes every trace of an upload that did not complete, in one step.
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from backup_repository.domain import roles as R
from backup_repository.domain.access import decide
from backup_repository.domain.collections import COLLECTION_NOT_FOUND
from backup_repository.domain.errors import (
    BadRequest, Conflict, DatabaseError, DomainError, Forbidden, NotFound, PayloadTooLarge, RequestTimeout,
    ServiceUnavailable, StorageError, TooManyRequests, Unauthenticated,
)
from backup_repository.domain.events import NO_EVENTS
from backup_repository.domain.names import is_object_name
from backup_repository.domain.openpgp import NO_GPG_FOOTER, NO_GPG_HEADER
from backup_repository.domain.times import utcnow
from backup_repository.domain.uploads import UploadBody, refuse_declared_length
from backup_repository.domain.versions import (
    ProtectedVersionsInTheWay, Version, collection_full, object_name, retention_blocks_next_upload, rotate_out,
    upload_allowance,
)
from backup_repository.domain.windows import is_open

log = logging.getLogger(__name__)

NOT_ALLOWED_TO_UPLOAD = "not authorized to upload versions to this collection"
WINDOW_CLOSED = (
    "backup window does not allow you to send a backup at this time. "
    "You need a token that has a special permission 'uploadsAnytime'"
)
PARALLEL_UPLOAD = "cannot upload to same collection in parallel"
TOO_MANY_UPLOADS = "too many uploads in progress for this user, retry when one has finished"

#: The upload lock is a lease: renewed every LOCK_RENEW seconds, it expires LOCK_TTL seconds after the last
#: renewal, so a crashed server blocks its collection for at most LOCK_TTL seconds.
LOCK_TTL = 45.0
LOCK_RENEW = 15.0
#: How many taken object names an upload skips before giving up (see Upload._reserve_free_number).
MAX_SKIPPED_NUMBERS = 1000
#: An upload that arrives while the previous one on its collection is being abandoned (its client went away)
#: waits this long for that clean-up instead of getting 409 at once (a backup job reconnecting after a blip).
ABORT_WAIT = 2.0


class SizeMismatch(Exception):
    pass


def upload_outcome(exc: BaseException) -> str:
    """The outcome (domain/events.UPLOAD_OUTCOMES) of an upload that failed with ``exc``."""
    message = getattr(exc, "message", "")
    if isinstance(exc, Forbidden):
        return "window_closed" if message == WINDOW_CLOSED else "forbidden"
    if isinstance(exc, ProtectedVersionsInTheWay):
        return "protected"
    if isinstance(exc, DomainError):
        if isinstance(exc, BadRequest) and (NO_GPG_HEADER in message or NO_GPG_FOOTER in message):
            return "not_gpg"
        if isinstance(exc, TooManyRequests) and message == TOO_MANY_UPLOADS:
            return "too_many_uploads"
        for kind, outcome in ((PayloadTooLarge, "quota"), (Conflict, "locked"), (NotFound, "not_found"),
                              (Unauthenticated, "unauthenticated"), (RequestTimeout, "timeout"),
                              (ServiceUnavailable, "stopping"), (BadRequest, "bad_request"),
                              (TooManyRequests, "unauthenticated")):  # on this path: the failed-login budget
            if isinstance(exc, kind):
                return outcome
        return "error" if exc.status >= 500 else "bad_request"
    if isinstance(exc, StorageError):
        return "storage_error"
    if isinstance(exc, DatabaseError):
        return "database_error"
    return "error"


@dataclass
class UploadRequest:
    collection_id: str
    content_type: str = ""
    declared_length: Optional[int] = None


class UploadService:
    def __init__(self, config, db, storage, max_per_user: int = 8, clock=utcnow, events=NO_EVENTS):
        self._config = config
        self._events = events
        self._db = db
        self._storage = storage
        self._clock = clock
        self.max_per_user = max_per_user
        self.active = set()
        self._aborting = {}  # collection id -> the clean-up of an upload being abandoned in this process

    def configured(self, collection_id: str) -> bool:
        return is_object_name(collection_id) and self._config.collection(collection_id) is not None

    def running_for(self, user_name: str) -> int:
        return sum(1 for upload in self.active if upload.principal.actor.name == user_name)

    async def begin(self, principal, request: UploadRequest) -> "Upload":
        valid = is_object_name(request.collection_id)
        collection = self._config.collection(request.collection_id) if valid else None
        if collection is None:
            raise NotFound(COLLECTION_NOT_FOUND)
        actor = principal.actor
        if not decide(actor, R.ACTION_UPLOAD, collection.id, collection.access_control):
            raise Forbidden(NOT_ALLOWED_TO_UPLOAD)
        now = self._clock()
        if not is_open(collection.windows, now) and not decide(
            actor, R.ACTION_UPLOAD_ANYTIME, collection.id, collection.access_control
        ):
            raise Forbidden(WINDOW_CLOSED)
        if self.running_for(actor.name) >= self.max_per_user:
            raise TooManyRequests(TOO_MANY_UPLOADS, retry_after=10)
        UploadBody.check_content_type(request.content_type)  # a malformed form type is refused before any work

        await self._after_abandoned_upload(collection.id)
        holder = uuid.uuid4().hex
        if not await self._db.acquire_upload_lock(collection.id, holder, now, LOCK_TTL):
            raise Conflict(PARALLEL_UPLOAD)
        upload = Upload(collection, principal, holder, db=self._db, storage=self._storage, clock=self._clock,
                        on_abort=self._abort_started, on_end=self.active.discard, events=self._events)
        self.active.add(upload)
        try:
            await upload.prepare(request, now)
        except BaseException:
            await upload.abort()
            raise
        return upload

    async def _after_abandoned_upload(self, collection_id: str):
        cleanup = self._aborting.get(collection_id)
        if cleanup is not None and not cleanup.done():
            await asyncio.wait([cleanup], timeout=ABORT_WAIT)

    def _abort_started(self, upload: "Upload", cleanup: asyncio.Future):
        collection_id = upload.collection.id
        self._aborting[collection_id] = cleanup

        def forget(done):
            if self._aborting.get(collection_id) is done:
                del self._aborting[collection_id]

        cleanup.add_done_callback(forget)


class Upload:
    """One upload in progress; it holds the collection's lock until it completes or is aborted."""

    def __init__(self, collection, principal, holder: str, db, storage, clock, on_abort=None, on_end=None,
                 events=NO_EVENTS):
        self.collection = collection
        self._events = events
        self.principal = principal
        self.holder = holder
        self._db = db
        self._storage = storage
        self._clock = clock
        self._on_abort = on_abort  # told when a clean-up starts (later uploads of the collection wait for it)
        self._on_end = on_end  # told when the upload no longer holds its lock
        self.number = None
        self.filename = None
        self.object_name = None
        self.body = None
        self._writer = None
        self._renewal = None
        self._finished = False
        self._aborting = None

    async def prepare(self, request: UploadRequest, now):
        self._renewal = asyncio.ensure_future(self._renew_lock())
        versions = [v.info() for v in await self._db.list_versions(self.collection.id)]
        blocked_until = retention_blocks_next_upload(self.collection, versions, now)
        if blocked_until is not None:  # it would push a version out before its minimumRetention has passed
            raise collection_full(blocked_until, now)
        allowance = upload_allowance(self.collection, versions, now)
        allowed = allowance.allowed

        def over_budget(size: int):
            return allowance.refusal(size, self._clock())

        refuse_declared_length(request.declared_length, request.content_type, allowed, over_budget)
        self.body = UploadBody(allowed, request.content_type, over_budget)
        await self._reserve_free_number()
        self.object_name = object_name(self.collection.id, self.filename)
        # recorded before a byte is written: after a crash, the janitor finds what to clean up from this row
        await self._db.add_pending_upload(self.object_name, self.collection.id, now)
        retain_until = None
        if self.collection.minimum_retention is not None:  # S3 Object Lock, when the store has it (objectLock=)
            retain_until = now + timedelta(seconds=self.collection.minimum_retention)
        self._writer = self._storage.writer(self.object_name, self._check_size, retain_until)
        log.info("upload of %s v%d started by %r (up to %d bytes)", self.collection.id, self.number,
                 self.principal.actor.name, allowed)

    async def _reserve_free_number(self):
        """Reserve the next number whose object name is free in the store.

        An object may already sit at that name without a version owning it: written by the Go server into the
        same bucket, or left by a crash between storing and registering. It is never overwritten: its number
        is skipped."""
        for _ in range(MAX_SKIPPED_NUMBERS):
            self.number = await self._db.reserve_version_number(self.collection.id)
            self.filename = self.collection.filename_for(self.number)
            name = object_name(self.collection.id, self.filename)
            if await self._storage.size(name) is None:
                return
            log.warning("%s already exists in the store without a version owning it; number %d is skipped so "
                        "that it is not overwritten", name, self.number)
        raise Conflict(f"cannot find a free object name in collection {self.collection.id}; see the server log")

    def _check_size(self, stored: int):
        """Runs in the storage thread before the object is committed."""
        if stored != self.body.received:
            raise SizeMismatch(f"the store holds {stored} bytes, {self.body.received} were received")

    def feed(self, data) -> Optional[asyncio.Future]:
        """Take the next body chunk; returns a future to await when the store is behind, else None. Raises a
        DomainError (400, 413) the moment the data breaks a rule."""
        waiting = None
        for piece in self.body.accept(data):
            waiting = self._writer.write(piece) or waiting
        return waiting

    async def complete(self) -> Version:
        """The body is complete: store, register, rotate; any failure removes the upload entirely."""
        try:
            self.body.finish()
            stored = await self._writer.close()
            now = self._clock()
            version = Version(
                id=str(uuid.uuid4()), collection_id=self.collection.id, number=self.number,
                filename=self.filename, size=stored.size, sha256=stored.sha256,
                uploaded_by_session_id=self.principal.session.id, user=self.principal.actor.name,
                created_at=now, updated_at=now,
            )
            try:
                await self._db.insert_version(version, pending_object=self.object_name)
            except BaseException:
                await self._storage.delete(stored.name)
                raise
        except BaseException:
            await self.abort()
            raise
        self._finished = True
        log.info("stored %s v%d: %d bytes, sha256 %s", self.collection.id, self.number, version.size,
                 version.sha256)
        try:
            await self._rotate(now)
        finally:
            await self._release()
        return version

    async def _rotate(self, now):
        versions = await self._db.list_versions(self.collection.id)
        by_id = {v.id: v for v in versions}
        for info in rotate_out(self.collection, [v.info() for v in versions], now):
            doomed = by_id[info.id]
            await self._db.delete_version(doomed.id)
            self._events.rotated(1)
            try:
                await self._storage.delete(doomed.object_name)
            except Exception as exc:  # the row is gone; the object is an orphan to sweep later
                log.error("rotation of %s v%d: the object could not be deleted: %s", doomed.collection_id,
                          doomed.number, exc)
            log.info("rotation: deleted %s v%d", doomed.collection_id, doomed.number)

    async def abort(self):
        """Remove every trace of this upload — the object, the reserved number, the lock — as one step.

        Safe to call several times and from several places (client gone, server stopping): all wait for the
        same clean-up, and so does the next upload of the collection (UploadService.begin)."""
        if self._finished and self._aborting is None:
            return
        self._finished = True
        if self._aborting is None:
            self._aborting = asyncio.ensure_future(self._abort())
            if self._on_abort is not None:
                self._on_abort(self, self._aborting)
        await asyncio.shield(self._aborting)

    async def _abort(self):
        try:
            if self._writer is not None:
                await self._writer.abort()
            if self.object_name is not None:
                # the pending row goes only when the store confirms that nothing is left; otherwise the
                # janitor retries later (the store may be down right now)
                if await self._storage.size(self.object_name) is not None:
                    await self._storage.delete(self.object_name)
                await self._db.remove_pending_upload(self.object_name)
            if self.number is not None:
                await self._db.release_version_number(self.collection.id, self.number)
                log.info("upload of %s v%d abandoned; nothing of it was kept", self.collection.id, self.number)
        except Exception as exc:
            log.error("while abandoning an upload of %s: %s", self.collection.id, exc)
        finally:
            await self._release()

    async def _release(self):
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if self._on_end is not None:
            self._on_end(self)
        try:
            await self._db.release_upload_lock(self.collection.id, self.holder)
        except Exception as exc:  # the lease expires on its own
            log.error("cannot release the upload lock of %s: %s", self.collection.id, exc)

    async def _renew_lock(self):
        while True:
            await asyncio.sleep(LOCK_RENEW)
            try:
                now = self._clock()
                if not await self._db.renew_upload_lock(self.collection.id, self.holder, now, LOCK_TTL):
                    log.warning("the upload lock of %s was lost; taking it again", self.collection.id)
                    await self._db.acquire_upload_lock(self.collection.id, self.holder, now, LOCK_TTL)
            except Exception as exc:
                log.warning("cannot renew the upload lock of %s: %s", self.collection.id, exc)
