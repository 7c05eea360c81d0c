"""Uploads of new versions (docs/api.md#upload): the checks before the body, the commit after it, the clean-up
after any failure, and everything in between — the deadlines, the refusal of a body that breaks a rule, and the
outcome each upload is counted with (docs/monitoring.md).

``UploadService.begin()`` runs every check that needs no body byte — collection, permission, backup window, the
collection's upload lock, the size budget — then reserves the version number, opens the object writer and starts
the upload's deadlines. ``Upload.feed()`` passes each body chunk through the body rules (domain/uploads.py) into
the writer; ``Upload.complete()`` registers the version once the body is stored and rotates out what the strategy
says. An upload that fails on its own while its body streams (a broken rule, a deadline, the store) removes every
trace of itself and then tells its ``on_failed`` callback, which answers the client; ``client_gone()`` and
``abort()`` end it from outside. Each upload is counted once, with the outcome its error's ``reason`` (or kind)
gives — never its message. The HTTP handler only translates Tornado's callbacks into these calls.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, NamedTuple, Optional

from backup_repository.domain import roles as R
from backup_repository.domain.access import decide
from backup_repository.domain.collections import COLLECTION_NOT_FOUND, Collection
from backup_repository.domain.errors import (
    BadRequest, Conflict, DomainError, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, ServiceUnavailable,
    TooManyRequests, Unauthenticated,
)
from backup_repository.domain.events import NO_EVENTS, UPLOAD_OUTCOMES, Events
from backup_repository.domain.names import is_object_name
from backup_repository.domain.times import utcnow
from backup_repository.domain.uploads import MinimumRate, UploadBody, refuse_declared_length
from backup_repository.domain.versions import (
    Version, collection_full, object_name, retention_blocks_next_upload, rotate_out, upload_allowance,
)
from backup_repository.domain.windows import is_open
from backup_repository.failures import DatabaseError, LeaseLost, StorageError
from backup_repository.services import ports
from backup_repository.services.auth import Principal
from backup_repository.services.deletions import finish_deletion

log = logging.getLogger(__name__)

NOT_ALLOWED_TO_UPLOAD = "not authorized to upload versions to this collection"
WINDOW_CLOSED = (
    "backup window does not allow you to send a backup at this time. "
    "You need a token that has a special permission 'uploadsAnytime'"
)
PARALLEL_UPLOAD = "cannot upload to same collection in parallel"
TOO_MANY_UPLOADS = "too many uploads in progress for this user, retry when one has finished"
REQUEST_TOO_LONG = "Request took too long"
LEASE_LOST = ("the upload could not be registered in time (the database or the store stalled) and was abandoned; "
              "nothing of it was kept, send it again")

#: How many taken object names an upload skips before giving up (see Upload._reserve_free_number).
MAX_SKIPPED_NUMBERS = 1000
#: An upload that arrives while the previous one on its collection is being abandoned (its client went away)
#: waits this long for that clean-up instead of getting 409 at once (a backup job reconnecting after a blip).
ABORT_WAIT = 2.0


class SizeMismatch(Exception):
    pass


#: The outcome of an upload refused with an error of this kind, when its reason does not say more.
OUTCOME_OF_KIND = (
    (PayloadTooLarge, "quota"), (Conflict, "locked"), (NotFound, "not_found"), (Forbidden, "forbidden"),
    (Unauthenticated, "unauthenticated"), (RequestTimeout, "timeout"), (ServiceUnavailable, "stopping"),
    (BadRequest, "bad_request"),
    (TooManyRequests, "unauthenticated"),  # on the upload path without a reason: the failed-login budget
)


def upload_outcome(exc: BaseException) -> str:
    """The outcome (domain/events.UPLOAD_OUTCOMES) of an upload that failed with ``exc``: its reason when that is
    an outcome, else what its kind says."""
    reason = getattr(exc, "reason", None)
    if reason in UPLOAD_OUTCOMES:
        return reason
    if isinstance(exc, DomainError):
        for kind, outcome in OUTCOME_OF_KIND:
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


@dataclass(frozen=True)
class UploadLimits:
    """How long an upload may take (docs/configuration.md): ``total`` for the whole body (the lower of
    --http-upload-timeout and --storage-io-timeout), ``idle`` without a body byte (--http-upload-idle-timeout).
    ``lease`` (--upload-lease): the upload's lock and its pending-upload record are leases, renewed every third of
    it, that run out this long after the last renewal — so a crashed server blocks its collection, and leaves its
    leftovers to the janitor, for at most this long. ``min_rate`` over ``rate_window``: the minimum-rate rule
    (domain/uploads.MinimumRate)."""

    total: float = 3 * 3600.0
    idle: float = 300.0
    lease: float = 45.0
    min_rate: float = 0.0  # octets a second (--http-upload-min-rate); 0: no rule
    rate_window: float = 300.0  # seconds (--http-upload-rate-window)


class UploadService:
    def __init__(self, config: ports.Configuration, db: ports.Repository, storage: ports.BlobStore,
                 max_per_user: int = 8, clock: Callable[[], datetime] = utcnow, events: Events = NO_EVENTS,
                 limits: UploadLimits = UploadLimits()):
        self._config = config
        self._events = events
        self._db = db
        self._storage = storage
        self._clock = clock
        self.max_per_user = max_per_user
        self.limits = limits
        self.active: set[Upload] = set()
        # collection id -> the clean-up of an upload being abandoned in this process
        self._aborting: dict[str, asyncio.Future] = {}

    def configured(self, collection_id: str) -> bool:
        return is_object_name(collection_id) and self._config.collection(collection_id) is not None

    def running_for(self, user_name: str) -> int:
        return sum(1 for upload in self.active if upload.principal.actor.name == user_name)

    def refused(self, exc: Optional[BaseException], collection_id: str, authenticated: bool) -> None:
        """Count an upload request that ended before ``begin()`` gave it an Upload (its token, its collection, its
        window, the lock...): ``exc`` is what refused it, None when the client went away first. Failures count per
        collection only for an authenticated client and a configured collection (anyone may send junk to a URL)."""
        outcome = upload_outcome(exc) if exc is not None else "client_gone"
        known = authenticated and self.configured(collection_id)
        self._events.upload_finished(outcome, collection_id if known else None)

    async def begin(self, principal: Principal, request: UploadRequest,
                    on_failed: Optional[Callable[[BaseException], None]] = None) -> "Upload":
        """Check everything that needs no body byte, then start the upload; ``on_failed(exc)`` is told, once its
        clean-up is done, when the upload fails while its body streams (the caller then answers the client)."""
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
            raise Forbidden(WINDOW_CLOSED, reason="window_closed")
        if self.running_for(actor.name) >= self.max_per_user:
            raise TooManyRequests(TOO_MANY_UPLOADS, retry_after=10, reason="too_many_uploads")
        UploadBody.check_content_type(request.content_type)  # a malformed form type is refused before any work

        await self._after_abandoned_upload(collection.id)
        holder = uuid.uuid4().hex
        if not await self._db.upload_locks.acquire(collection.id, holder, now, self.limits.lease):
            raise Conflict(PARALLEL_UPLOAD)
        upload = Upload(collection, principal, holder, db=self._db, storage=self._storage, clock=self._clock,
                        on_abort=self._abort_started, on_end=self.active.discard, events=self._events,
                        limits=self.limits, on_failed=on_failed)
        self.active.add(upload)
        try:
            await upload.prepare(request, now)
        except BaseException:
            await upload.abort()
            raise
        upload.start_deadlines()
        return upload

    async def _after_abandoned_upload(self, collection_id: str) -> None:
        cleanup = self._aborting.get(collection_id)
        if cleanup is not None and not cleanup.done():
            await asyncio.wait([cleanup], timeout=ABORT_WAIT)

    def _abort_started(self, upload: "Upload", cleanup: asyncio.Future) -> None:
        collection_id = upload.collection.id
        self._aborting[collection_id] = cleanup

        def forget(done):
            if self._aborting.get(collection_id) is done:
                del self._aborting[collection_id]

        cleanup.add_done_callback(forget)


class Streaming(NamedTuple):
    """What an upload's body streams through, once prepared: its number and file name, the body's rules, the
    object's writer."""

    number: int
    filename: str
    body: UploadBody
    writer: ports.ObjectWriter


class Upload:
    """One upload in progress; it holds the collection's lock until it completes or is aborted."""

    def __init__(self, collection: Collection, principal: Principal, holder: str, db: ports.Repository,
                 storage: ports.BlobStore, clock: Callable[[], datetime],
                 on_abort: Optional[Callable[["Upload", asyncio.Future], None]] = None,
                 on_end: Optional[Callable[["Upload"], None]] = None, events: Events = NO_EVENTS,
                 limits: UploadLimits = UploadLimits(),
                 on_failed: Optional[Callable[[BaseException], None]] = None):
        self.collection = collection
        self._events = events
        self.principal = principal
        self.holder = holder
        self.limits = limits
        self._db = db
        self._storage = storage
        self._clock = clock
        self._on_abort = on_abort  # told when a clean-up starts (later uploads of the collection wait for it)
        self._on_end = on_end  # told when the upload no longer holds its lock
        self._on_failed = on_failed  # told when the upload failed on its own, after its clean-up
        # what prepare() reserves and opens, in this order; abort() undoes whatever of it there is
        self.number: Optional[int] = None
        self.filename: Optional[str] = None
        self.object_name: Optional[str] = None
        self.body: Optional[UploadBody] = None
        self._writer: Optional[ports.ObjectWriter] = None
        self._renewal: Optional[asyncio.Future] = None
        self._finished = False
        self._aborting: Optional[asyncio.Future] = None
        self._began = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._last_data = 0.0
        self._store_busy: Optional[asyncio.Future] = None  # the body waits for it while the store catches up
        self._rate: Optional[MinimumRate] = None  # the minimum-rate rule, from start_deadlines()
        self._body_complete = False
        # the task that cleans up after a failure and tells on_failed
        self._failure: Optional[asyncio.Future] = None
        self._committing = False  # the version's registration has begun
        self._counted = False

    async def prepare(self, request: UploadRequest, now: datetime) -> None:
        self._renewal = asyncio.ensure_future(self._renew_lock())
        versions = [v.info() for v in await self._db.versions.of_collection(self.collection.id)]
        blocked_until = retention_blocks_next_upload(self.collection, versions, now)
        if blocked_until is not None:  # it would push a version out before its minimumRetention has passed
            raise collection_full(blocked_until, now)
        allowance = upload_allowance(self.collection, versions, now)
        allowed = allowance.allowed

        def over_budget(size: int) -> Optional[DomainError]:
            return allowance.refusal(size, self._clock())

        refuse_declared_length(request.declared_length, request.content_type, allowed, over_budget)
        self.body = UploadBody(allowed, request.content_type, over_budget)
        name = await self._reserve_free_number(now)
        retain_until = None
        if self.collection.minimum_retention is not None:  # S3 Object Lock, when the store has it (objectLock=)
            retain_until = now + timedelta(seconds=self.collection.minimum_retention)
        self._writer = self._storage.writer(name, self._check_size, retain_until)
        self._writer.when_failed(self.fail)  # a store that fails while the body streams fails the upload at once
        log.info("upload of %s v%d started by %r (up to %d bytes)", self.collection.id, self.number,
                 self.principal.actor.name, allowed)

    async def _reserve_free_number(self, now: datetime) -> str:
        """Reserve the next number whose object name is free, and record the upload under that name before a byte
        is written (after a crash, the janitor finds what to clean up from that row).

        An object may already sit at that name without a version owning it: written by the Go server into the
        same bucket, or left by a crash between storing and registering; or the name may still be recorded as an
        upload's leftover. It is never overwritten: its number is skipped."""
        for _ in range(MAX_SKIPPED_NUMBERS):
            self.number = number = await self._db.versions.reserve_number(self.collection.id)
            self.filename = self.collection.filename_for(number)
            name = object_name(self.collection.id, self.filename)
            if await self._storage.size(name) is None:
                if await self._db.pending_uploads.add(name, self.collection.id, now, self.holder, self.limits.lease):
                    self.object_name = name
                    return name
                log.warning("%s is still recorded as the leftover of an interrupted upload; number %d is skipped",
                            name, self.number)
                continue
            log.warning("%s already exists in the store without a version owning it; number %d is skipped so "
                        "that it is not overwritten", name, self.number)
        raise Conflict(f"cannot find a free object name in collection {self.collection.id}; see the server log")

    def _streaming(self) -> "Streaming":
        """What prepare() made before the first body byte."""
        if self.number is None or self.filename is None or self.body is None or self._writer is None:
            raise RuntimeError(f"the upload to {self.collection.id} was not prepared")
        return Streaming(self.number, self.filename, self.body, self._writer)

    def _check_size(self, stored: int) -> None:
        """Runs in the storage thread before the object is committed."""
        received = self._streaming().body.received
        if stored != received:
            raise SizeMismatch(f"the store holds {stored} bytes, {received} were received")

    # --- while the body streams ---------------------------------------------------------------------------------
    def start_deadlines(self) -> None:
        """The whole body must arrive within ``limits.total``, and no gap without a byte may last ``limits.idle``
        (a stalled client must not hold the collection's lock); the time the store makes the body wait is no
        gap."""
        loop = asyncio.get_running_loop()
        self._last_data = loop.time()
        self._rate = MinimumRate(self.limits.min_rate, self.limits.rate_window, loop.time())
        self._timers = [loop.call_later(self.limits.total, self._total_deadline),
                        loop.call_later(self.limits.idle, self._idle_check)]
        if self.limits.min_rate > 0:
            self._timers.append(loop.call_later(self._rate_tick(), self._rate_check))

    def feed(self, data) -> Optional[asyncio.Future]:
        """Take the next body chunk; returns a future to await when the store is behind, else None. The moment the
        data breaks a rule (400, 413) or the store fails, the upload fails (see ``on_failed``); chunks that arrive
        after that are dropped."""
        if self._failure is not None or self._finished:
            return None
        self._last_data = asyncio.get_running_loop().time()
        if self._rate is not None:
            self._rate.add(len(data))
        waiting = None
        try:
            streaming = self._streaming()
            for piece in streaming.body.accept(data):
                waiting = streaming.writer.write(piece) or waiting
        except Exception as exc:
            self.fail(exc)
            return None
        if waiting is not None:  # the store is behind: the client is not idle while the server does not read
            self._store_busy = waiting
            if self._rate is not None:
                self._rate.store_waits(self._last_data)
            waiting.add_done_callback(self._store_caught_up)
        return waiting

    def _store_caught_up(self, _future: asyncio.Future) -> None:
        self._store_busy = None
        self._last_data = asyncio.get_running_loop().time()
        if self._rate is not None:
            self._rate.store_caught_up(self._last_data)

    def _rate_tick(self) -> float:
        return max(1.0, self.limits.rate_window / 10)

    def _rate_check(self) -> None:
        """The minimum-rate rule: a body that averages less than --http-upload-min-rate over the last
        --http-upload-rate-window (the store's waits left out) is cut off, so that a trickle cannot hold the
        collection's lock for the hours of --http-upload-timeout."""
        if self._body_complete or self._failure is not None or self._finished or self._rate is None:
            return
        loop = asyncio.get_running_loop()
        average = self._rate.too_slow(loop.time())
        if average is None:
            self._timers.append(loop.call_later(self._rate_tick(), self._rate_check))
            return
        log.warning("upload to %s averaged %.1f bytes/s over the last %.0fs, less than %g (--http-upload-min-rate); "
                    "aborting it", self.collection.id, average, self.limits.rate_window, self.limits.min_rate)
        self.fail(RequestTimeout(REQUEST_TOO_LONG))

    def _total_deadline(self) -> None:
        if not self._body_complete:
            log.warning("upload to %s not complete after %.0fs (--http-upload-timeout); aborting it",
                        self.collection.id, self.limits.total)
            self.fail(RequestTimeout(REQUEST_TOO_LONG))

    def _idle_check(self) -> None:
        if self._body_complete or self._failure is not None or self._finished:
            return
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._last_data
        if silent < self.limits.idle or self._store_busy is not None:
            self._timers.append(loop.call_later(max(0.1, self.limits.idle - silent), self._idle_check))
            return
        log.warning("upload to %s sent nothing for %.0fs (--http-upload-idle-timeout); aborting it",
                    self.collection.id, silent)
        self.fail(RequestTimeout(REQUEST_TOO_LONG))

    def fail(self, exc: BaseException) -> None:
        """The upload fails with ``exc`` (a broken rule, a deadline, the store; or a refusal of the body's framing
        from outside): clean up, count it, then tell ``on_failed`` (once)."""
        if self._failure is not None or self._finished:
            return
        self._failure = asyncio.ensure_future(self._clean_up_after(exc))  # abort() stops the deadlines

    async def _clean_up_after(self, exc: BaseException) -> None:
        await self.abort()
        if isinstance(exc, DomainError):  # a refusal of this upload: worth a line at info level (outages and
            detail = exc.detail  # anything else are logged where they are answered)
            log.info("upload to %s refused: %s%s", self.collection.id, exc.message, f" ({detail})" if detail else "")
        self._count(upload_outcome(exc))
        if self._on_failed is not None:
            self._on_failed(exc)

    def client_gone(self) -> None:
        """The connection closed. Before the whole body arrived, nothing of the upload may stay; after, it is
        stored all the same (docs/api.md#upload)."""
        if self._body_complete or self._failure is not None or self._finished:
            return
        self._failure = asyncio.ensure_future(self.abort())
        self._count("client_gone")

    def _stop_deadlines(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    def _count(self, outcome: str, version: Optional[Version] = None) -> None:
        """One outcome per upload (docs/monitoring.md#metrics)."""
        if self._counted:
            return
        self._counted = True
        if version is not None:
            self._events.upload_finished(outcome, self.collection.id, time.monotonic() - self._began, version.size)
        else:
            self._events.upload_finished(outcome, self.collection.id)

    # --- at the end of the body -----------------------------------------------------------------------------------
    async def complete(self) -> Optional[Version]:
        """The body is complete: store, register, rotate. None when the upload had failed already (``on_failed``
        was told); any failure now removes the upload entirely, is counted and raised."""
        self._body_complete = True
        if self._failure is not None:
            await asyncio.shield(self._failure)
            return None
        self._stop_deadlines()
        try:
            return await self._store()
        except BaseException as exc:
            self._count(upload_outcome(exc))
            raise

    async def _store(self) -> Version:
        try:
            streaming = self._streaming()
            streaming.body.finish()
            stored = await streaming.writer.close()
            now = self._clock()
            version = Version(
                id=str(uuid.uuid4()), collection_id=self.collection.id, number=streaming.number,
                filename=streaming.filename, size=stored.size, sha256=stored.sha256,
                uploaded_by_session_id=self.principal.session.id, user=self.principal.actor.name,
                created_at=now, updated_at=now,
            )
            self._committing = True
            try:
                await self._db.versions.insert(version, pending_object=self.object_name, holder=self.holder)
            except LeaseLost:  # the object goes with the abort below (and the janitor's pass)
                raise ServiceUnavailable(LEASE_LOST, retry_after=60, reason="storage_error") from None
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
        self._count("stored", version)
        return version

    async def _rotate(self, now: datetime) -> None:
        versions = await self._db.versions.of_collection(self.collection.id)
        by_id = {v.id: v for v in versions}
        for info in rotate_out(self.collection, [v.info() for v in versions], now):
            doomed = by_id[info.id]
            if not await self._db.versions.delete(doomed, now):
                continue  # rotated out by another server's upload meanwhile
            self._events.rotated(1)
            try:
                if await finish_deletion(self._db, self._storage, doomed.object_name, self._events):
                    log.info("rotation: deleted %s v%d", doomed.collection_id, doomed.number)
            except Exception as exc:  # the database went away: the deletion stays recorded for the janitor
                log.error("rotation of %s v%d: the object is left to the janitor: %s", doomed.collection_id,
                          doomed.number, exc)

    async def abort(self) -> None:
        """Remove every trace of this upload — the object, the reserved number, the lock — as one step.

        Safe to call several times and from several places (client gone, server stopping): all wait for the
        same clean-up, and so does the next upload of the collection (UploadService.begin)."""
        if self._finished and self._aborting is None:
            return
        self._finished = True
        self._stop_deadlines()
        if self._aborting is None:
            self._aborting = asyncio.ensure_future(self._abort())
            if self._on_abort is not None:
                self._on_abort(self, self._aborting)
        await asyncio.shield(self._aborting)

    async def _abort(self) -> None:
        try:
            if self._writer is not None:
                await self._writer.abort()
            if self.object_name is not None:
                # the pending row goes only when the store confirms that nothing is left; otherwise the
                # janitor retries later (the store may be down or refusing right now)
                refusal = await self._storage.remove(self.object_name)
                if refusal is not None:
                    raise StorageError(refusal)
                await self._db.pending_uploads.remove(self.object_name, self.holder)
            if self.number is not None:
                await self._db.versions.release_number(self.collection.id, self.number)
                log.info("upload of %s v%d abandoned; nothing of it was kept", self.collection.id, self.number)
        except Exception as exc:
            log.error("while abandoning an upload of %s: %s", self.collection.id, exc)
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if self._on_end is not None:
            self._on_end(self)
        try:
            await self._db.upload_locks.release(self.collection.id, self.holder)
        except Exception as exc:  # the lease expires on its own
            log.error("cannot release the upload lock of %s: %s", self.collection.id, exc)

    async def _renew_lock(self) -> None:
        """Renew the collection's upload lock and the lease of the upload's pending row, which tells the janitor
        that the upload is alive (docs/scaling.md#what-is-guaranteed)."""
        lease = self.limits.lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                now = self._clock()
                if not await self._db.upload_locks.renew(self.collection.id, self.holder, now, lease):
                    log.warning("the upload lock of %s was lost; taking it again", self.collection.id)
                    await self._db.upload_locks.acquire(self.collection.id, self.holder, now, lease)
                if self.object_name is None:
                    continue
                renewed = await self._db.pending_uploads.renew(self.object_name, self.holder, now, lease)
                # once the registration has begun, a record that is gone was registered, or the janitor has it and
                # the registration fails on its own; once the upload is being abandoned, its own clean-up removed it:
                # nothing to judge then
                if not renewed and not self._committing and not self._finished:
                    log.error("the upload of %s v%d was taken over by the janitor (its lease ran out)",
                              self.collection.id, self.number)
                    if not self._body_complete:
                        self.fail(ServiceUnavailable(LEASE_LOST, retry_after=60, reason="storage_error"))
                    return
            except Exception as exc:
                log.warning("cannot renew the upload lock of %s: %s", self.collection.id, exc)
