"""The ports: what the services need of the configuration, the database and the store, as ``typing.Protocol``s.

A service is built on these, never on a concrete provider, backend or store class, so that it can be read, and
tested, against this page alone. ``make test`` runs mypy (mypy.ini) over services/, storage/, config/, db/ and
context.py: wherever context.py hands a concrete object to a port, the object is checked against it.

    Configuration          what requests read: the current Snapshot, a user, a collection
    ConfigurationProvider  what the context drives: open, watch (start/stop), check, on_change
    StatusWriter           a provider that can show each collection's status (Kubernetes; optional)
    Repository             the database: one part per aggregate (Sessions, Versions, Deletions, PendingUploads,
                           UploadLocks, Integrity), and what spans them
    BlobStore              the object store the services see: sizes, deletions, streamed reads and writes
    ObjectWriter, Sender   an object being written; an object opened for sending kernel to kernel
    Backend                what BlobStore needs of a storage backend (storage/backend.py)

Implementations: the providers of config/ (``SnapshotSource``: filesystem.py, kubernetes.py), the repository of
db/ (sqlite.py, postgres.py), the ``BlobStore`` of storage/blobstore.py over the backends of storage/ (local.py,
cloud.py for S3 and Azure, gcs.py). ``StatusWriter``, ``UploadLocks`` and ``Backend`` are defined beside their
implementations, which name them as base classes (config, db and storage may not import the services:
.importlinter); they are re-exported here so that every port can be read on one page.
"""

import asyncio
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Optional, Protocol

from backup_repository.config.provider import Change, Snapshot, StatusWriter
from backup_repository.db.deletions import PendingDeletion
from backup_repository.db.integrity import Problem
from backup_repository.db.locks import UploadLocking
from backup_repository.db.versions import VersionStats, VersionSummary
from backup_repository.domain.collections import Collection
from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.users import User
from backup_repository.domain.versions import Version, VersionInfo
from backup_repository.failures import StorageError
from backup_repository.storage.backend import Backend
from backup_repository.storage.blobstore import StoredObject

__all__ = [
    "Configuration", "ConfigurationProvider", "StatusWriter",
    "Repository", "Sessions", "Versions", "Deletions", "PendingUploads", "UploadLocks", "Integrity",
    "BlobStore", "ObjectWriter", "Sender", "Backend",
]


# --- the configuration ---------------------------------------------------------------------------------------

class Configuration(Protocol):
    """What requests read of the configuration; never blocks (a provider serves its last Snapshot)."""

    @property
    def snapshot(self) -> Snapshot:
        ...

    def user(self, name: str) -> Optional[User]:
        ...

    def collection(self, collection_id: str) -> Optional[Collection]:
        ...


class ConfigurationProvider(Configuration, Protocol):
    """A configuration source as the context drives it (config/provider.py's ``SnapshotSource``)."""

    @property
    def root(self) -> str:
        """Where the configuration comes from, for messages."""
        ...

    @property
    def loaded_at(self) -> float:
        """When a Snapshot was last installed, unix seconds."""
        ...

    async def open(self) -> None:
        """Read the first Snapshot; ConfigurationUnavailable saying why it cannot."""
        ...

    def start(self) -> None:
        """Watch for changes."""
        ...

    async def stop(self) -> None:
        ...

    def check(self) -> None:
        """Raise OSError when the source is not usable (``/ready``)."""
        ...

    def on_change(self, listener: Callable[[Change], Awaitable[None]]) -> None:
        """``await listener(change)`` after each reload that removed users or keys, or set a password anew."""
        ...


# --- the database --------------------------------------------------------------------------------------------

class Sessions(Protocol):
    """Granted accesses: the sessions logins open and tokens are checked against (db/sessions.py)."""

    async def create(self, session: GrantedAccess) -> None: ...
    async def get(self, session_id: str) -> Optional[GrantedAccess]: ...
    async def deactivate(self, session_id: str, now: datetime) -> bool: ...
    async def bind_credential(self, session_id: str, credential: str) -> None: ...
    async def revoke(self, user_name: str, now: datetime, access_key_name: Optional[str] = None,
                     except_credential: Optional[str] = None) -> int: ...
    async def of_user(self, user_name: str, limit: int = 100) -> list[GrantedAccess]: ...


class Versions(Protocol):
    """Stored versions and their numbers (db/versions.py)."""

    async def reserve_number(self, collection_id: str) -> int: ...
    async def release_number(self, collection_id: str, number: int) -> bool: ...
    async def insert(self, version: Version, pending_object: Optional[str] = None,
                     holder: Optional[str] = None) -> None: ...
    async def all(self) -> list[Version]: ...
    async def of_collection(self, collection_id: str) -> list[Version]: ...
    async def get(self, collection_id: str, number: int) -> Optional[Version]: ...
    async def latest(self, collection_id: str) -> Optional[Version]: ...
    async def stats(self, collection_ids: Optional[Sequence[str]] = None) -> dict[str, VersionStats]: ...
    async def summaries(self) -> dict[str, VersionSummary]: ...
    async def infos(self, collection_ids: Iterable[str]) -> dict[str, list[VersionInfo]]: ...
    async def delete(self, version: Version, now: datetime) -> bool: ...


class Deletions(Protocol):
    """The objects of deleted versions, until the store confirms them gone (db/deletions.py)."""

    async def done(self, object_name: str) -> None: ...
    async def failed(self, object_name: str, error: str) -> None: ...
    async def recorded_before(self, recorded_before: datetime, limit: int = 1000) -> list[PendingDeletion]: ...
    async def refused(self, collection_id: Optional[str] = None) -> dict[str, list[PendingDeletion]]: ...


class PendingUploads(Protocol):
    """Uploads in progress, with their leases (db/pending.py)."""

    async def add(self, object_name: str, collection_id: str, now: datetime, holder: str, ttl: float) -> bool: ...
    async def renew(self, object_name: str, holder: str, now: datetime, ttl: float) -> bool: ...
    async def remove(self, object_name: str, holder: str) -> None: ...
    async def claim_abandoned(self, claimant: str, expired_before: datetime,
                              legacy_started_before: datetime) -> list[tuple[str, str]]: ...


#: One upload at a time per collection: acquire, renew, release (db/locks.py, where both kinds of lock name it: a
#: lease in a table, or PostgreSQL's advisory locks).
UploadLocks = UploadLocking


class Integrity(Protocol):
    """The results of verifying versions against the store (db/integrity.py)."""

    async def record(self, version: Version, ok: bool, message: str, now: datetime) -> None: ...
    async def failing_collections(self) -> dict[str, tuple[Problem, ...]]: ...
    async def last_verifications(self) -> dict[str, datetime]: ...
    async def problems(self, collection_id: str) -> list[Problem]: ...


class Repository(Protocol):
    """The metadata database (db/repository.py), reached through its parts: ``db.versions.latest(...)``."""

    @property
    def sessions(self) -> Sessions: ...
    @property
    def versions(self) -> Versions: ...
    @property
    def deletions(self) -> Deletions: ...
    @property
    def pending_uploads(self) -> PendingUploads: ...
    @property
    def upload_locks(self) -> UploadLocks: ...
    @property
    def integrity(self) -> Integrity: ...

    def describe(self) -> str: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the database cannot answer (``/ready``)."""
        ...

    async def created_at(self) -> Optional[datetime]:
        """When this database was first set up."""
        ...

    async def accounted_names(self) -> set[str]:
        """Every object name the database accounts for: versions, pending uploads, recorded deletions."""
        ...


# --- the store -----------------------------------------------------------------------------------------------

class ObjectWriter(Protocol):
    """An object being streamed into the store; visible only once ``close()`` succeeds."""

    def write(self, data: bytes | bytearray | memoryview) -> Optional[asyncio.Future]:
        """Queue ``data``; a future to await when the store is behind (back-pressure), else None."""
        ...

    async def close(self) -> StoredObject:
        """Complete the object: its size and sha256; StorageError on any failure."""
        ...

    async def abort(self) -> None:
        """Abandon the object: nothing of it stays."""
        ...

    def when_failed(self, callback: Callable[[StorageError], None]) -> None:
        """``callback(error)`` when the store fails before close() or abort()."""
        ...


class Sender(Protocol):
    """An object opened for sending to a socket kernel to kernel (storage/sendfile.py)."""

    async def send(self, sock: socket.socket, start: int, end: int, progress: Callable[[int], object]) -> int:
        """Send the bytes ``[start, end)`` to ``sock`` from a transfer thread; return how many."""
        ...

    def close(self) -> None:
        ...


class BlobStore(Protocol):
    """The object store as the services see it (storage/blobstore.py); every call runs off the event loop and
    fails with StorageError."""

    def describe(self) -> str: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def size(self, name: str) -> Optional[int]:
        """The object's size, None when there is none."""
        ...

    async def delete(self, name: str) -> bool: ...

    async def remove(self, name: str) -> Optional[str]:
        """Delete and confirm: None when the object is gone, else why it is still there."""
        ...

    async def objects(self) -> list[tuple[str, float]]:
        """(name, modified epoch seconds) of every object, the store's own left out."""
        ...

    async def remove_leftovers(self, name: str, older_than: float) -> int: ...
    async def sweep_temporary(self, older_than: float) -> list[str]: ...

    def writer(self, name: str, check_size: Optional[Callable[[int], object]] = None,
               retain_until: Optional[datetime] = None) -> ObjectWriter:
        """Start writing ``name``; ``check_size(size)`` may refuse it before it becomes visible."""
        ...

    def read(self, name: str, start: int = 0, end: Optional[int] = None) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)``; close it with contextlib.aclosing."""
        ...

    async def open_sender(self, name: str, start: int, end: int) -> Optional[Sender]:
        """The bytes opened for sending kernel to kernel, or None to stream them with ``read``."""
        ...

    async def health_check(self, timeout: float) -> None:
        """A round trip (write, read back, delete) within ``timeout`` seconds."""
        ...
