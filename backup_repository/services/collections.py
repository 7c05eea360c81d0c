"""Reading collections: version listings, downloads, the collection list and collection health
(docs/api.md#collections)."""

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from backup_repository.domain import roles as R
from backup_repository.domain.access import Actor, decide
from backup_repository.domain.collections import (
    COLLECTION_NOT_FOUND, Collection, CollectionStatus, ListedCollection, Usage,
)
from backup_repository.domain.errors import Forbidden, NotFound
from backup_repository.domain.names import is_object_name
from backup_repository.domain.times import utcnow
from backup_repository.domain.versions import Version, retention_blocks_next_upload
from backup_repository.domain.windows import next_change
from backup_repository.failures import DatabaseError, StorageError
from backup_repository.health.checks import CheckResult
from backup_repository.health.collection import collection_checks, integrity_check, storage_consistency_check
from backup_repository.services import ports
from backup_repository.services.auth import Principal

VERSION_NOT_FOUND = "cannot find specified version"


NOT_ALLOWED_TO_DOWNLOAD = "not authorized to download versions from this collection"
NOT_ALLOWED_TO_LIST = "not authorized to list versions"
INVALID_HEALTH_CODE = "not authorized - invalid value of 'code' parameter in query string"

_VERSION_REF = re.compile(r"v?([0-9]{1,18})")


@dataclass(frozen=True)
class Download:
    collection: Collection
    version: Version


class CollectionService:
    def __init__(self, config: ports.Configuration, db: ports.Repository, storage: ports.BlobStore,
                 clock: Callable[[], datetime] = utcnow):
        self._config = config
        self._db = db
        self._storage = storage
        self._clock = clock

    def _collection(self, collection_id: str) -> Collection:
        collection = self._config.collection(collection_id) if is_object_name(collection_id) else None
        if collection is None:
            raise NotFound(COLLECTION_NOT_FOUND)
        return collection

    @staticmethod
    def _may(actor: Actor, action: str, collection: Collection) -> bool:
        return decide(actor, action, collection.id, collection.access_control)

    def _may_list(self, actor: Actor, collection: Collection) -> bool:
        return self._may(actor, R.ACTION_UPLOAD, collection) or self._may(actor, R.ACTION_DOWNLOAD, collection)

    async def versions(self, principal: Principal, collection_id: str) -> list[Version]:
        collection = self._collection(collection_id)
        if not self._may_list(principal.actor, collection):
            raise Forbidden(NOT_ALLOWED_TO_LIST)
        return await self._db.versions.of_collection(collection.id)

    async def download(self, principal: Principal, collection_id: str, reference: str) -> Download:
        """Resolve ``latest``, ``N`` or ``vN`` to a stored version the caller may download."""
        collection = self._collection(collection_id)
        if not self._may(principal.actor, R.ACTION_DOWNLOAD, collection):
            raise Forbidden(NOT_ALLOWED_TO_DOWNLOAD)
        if reference == "latest":
            version = await self._db.versions.latest(collection.id)
        else:
            match = _VERSION_REF.fullmatch(reference)
            version = await self._db.versions.get(collection.id, int(match.group(1))) if match else None
        if version is None:
            raise NotFound(VERSION_NOT_FOUND)
        return Download(collection, version)

    async def open_file(self, download: Download, start: int, end: int) -> Optional[ports.Sender]:
        """The bytes ``[start, end)`` of the download's object opened for sending to the client's socket kernel to
        kernel (``.send(sock, start, end, progress)``, then ``.close()``), or None when the store streams them
        instead (``read``)."""
        try:
            return await self._storage.open_sender(download.version.object_name, start, end)
        except StorageError:
            await self._not_found_if_rotated(download)
            raise

    async def read(self, download: Download, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)`` of a download, as an async generator (close it with contextlib.aclosing)."""
        began = False
        async with aclosing(self._storage.read(download.version.object_name, start, end)) as chunks:
            try:
                async for chunk in chunks:
                    began = True
                    yield chunk
            except StorageError:
                if not began:  # nothing sent yet: the answer may still be a 404
                    await self._not_found_if_rotated(download)
                raise

    async def _not_found_if_rotated(self, download: Download) -> None:
        """The object could not be read. When its version is gone meanwhile (rotation deleted it between the lookup
        and the read), the answer is the 404 of a version that does not exist, not the 503 of a store that is
        away (docs/api.md#downloads)."""
        try:
            current = await self._db.versions.get(download.collection.id, download.version.number)
        except DatabaseError:
            return
        if current is None or current.id != download.version.id:
            raise NotFound(VERSION_NOT_FOUND)

    async def listing(self, principal: Principal) -> list[ListedCollection]:
        """The collections the caller may list versions of, each a ListedCollection with its usage. Only the
        collections that can grant the caller anything are looked at: all of them when the user's own roles grant
        uploads or downloads, else those whose accessControl names the user — so a tenant's listing costs the same
        among ten thousand."""
        snapshot = self._config.snapshot
        actor = principal.actor
        if R.can_perform(actor.user.roles, R.ACTION_UPLOAD) or R.can_perform(actor.user.roles, R.ACTION_DOWNLOAD):
            candidates, stats = sorted(snapshot.collections), await self._db.versions.stats()
        else:
            candidates = list((snapshot.granted or {}).get(actor.name, ()))
            stats = await self._db.versions.stats(candidates)
        result = []
        for collection_id in candidates:
            collection = snapshot.collections[collection_id]
            if not self._may_list(actor, collection):
                continue
            result.append(ListedCollection(collection, Usage(*stats.get(collection_id, (0, 0, None)))))
        return result

    async def statuses(self, known: Optional[dict] = None) -> dict[str, CollectionStatus]:
        """{collection id: CollectionStatus} for every collection: versions, bytes used, the latest version's time
        and the health checks that fail (docs/kubernetes.md#status). The checks that need the database only —
        objects in the store are not looked at here (that is the collection health endpoint's and --verify's work).

        ``known`` (kept by the caller between calls) remembers what each status was computed from; with it, only
        the statuses computed again are returned: those of the collections whose versions, configuration or
        integrity findings changed, one of whose backup windows opened or closed since, or whose minimumRetention
        stopped blocking the next upload — two queries per call
        otherwise, whatever the number of collections. A caller that could not use a status removes its entry
        from ``known``."""
        every, known = known is None, {} if known is None else known
        snapshot = self._config.snapshot
        stats = await self._db.versions.stats()
        failing = await self._db.integrity.failing_collections()
        now = self._clock()
        result = {}
        for collection_id, collection in snapshot.collections.items():
            count, used, latest = basis = stats.get(collection_id, (0, 0, None))
            problems = failing.get(collection_id, ())
            before = known.get(collection_id)
            if (before is not None and before[0] is collection and before[1] == (basis, problems)
                    and (before[2] is None or now < before[2])):
                if every:
                    result[collection_id] = before[3]
                continue
            versions = await self._db.versions.of_collection(collection_id) if count else []
            checks = [*collection_checks(collection, versions, now),
                      integrity_check([f"v{number} ({filename}): {message}" for number, filename, message in problems])]
            status = CollectionStatus(Usage(count, used, latest),
                                      tuple((check.name, check.message) for check in checks if not check.ok))
            known[collection_id] = (collection, (basis, problems), _status_changes_at(collection, versions, now),
                                    status if every else None)
            result[collection_id] = status
        for collection_id in set(known) - set(snapshot.collections):
            del known[collection_id]
        return result

    async def health(self, collection_id: str, code: str) -> list[CheckResult]:
        """The collection's health checks; the code must match ``healthSecretRef`` when the collection has one."""
        collection = self._collection(collection_id)
        if collection.health_code_sha256 is not None:
            digest = hashlib.sha256((code or "").encode()).hexdigest()
            if not hmac.compare_digest(digest, collection.health_code_sha256):
                raise Forbidden(INVALID_HEALTH_CODE)
        versions = await self._db.versions.of_collection(collection.id)
        sizes = await asyncio.gather(*(self._storage.size(v.object_name) for v in versions))
        missing = [v for v, size in zip(versions, sizes) if size is None]
        problems = [f"v{number} ({filename}): {message}"
                    for number, filename, message in await self._db.integrity.problems(collection.id)]
        kept = (await self._db.deletions.refused(collection.id)).get(collection.id, [])
        return [*collection_checks(collection, versions, self._clock()), storage_consistency_check(missing, kept),
                integrity_check(problems)]


def _status_changes_at(collection, versions, now):
    """When a status computed now can change without a new version: a backup window opening or closing, or the
    floor of the version that blocks the next upload passing (MinimumRetentionValidator)."""
    moments = [moment for moment in (next_change(collection.windows, now),
                                     retention_blocks_next_upload(collection, versions, now)) if moment is not None]
    return min(moments) if moments else None
