"""Stored versions of a collection, and the rules that decide which to keep: rotation and the size budget
(docs/api.md#upload). Plain functions over plain values, so every edge case is a unit test."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from backup_repository.domain.collections import STRATEGY_FIFO_PLUS_OLDER, Collection
from backup_repository.domain.times import format_time


def object_name(collection_id: str, filename: str) -> str:
    """Where a version is stored: ``{collectionId}/{filename}`` (docs/configuration.md#storage-urls)."""
    return f"{collection_id}/{filename}"


@dataclass(frozen=True)
class Version:
    """A registered version: visible only once its object is completely stored (docs/api.md#upload)."""

    id: str  # uuid
    collection_id: str
    number: int
    filename: str
    size: int
    sha256: str
    uploaded_by_session_id: str
    user: str
    created_at: datetime
    updated_at: datetime
    deleted_at: Optional[datetime] = None

    @property
    def object_name(self) -> str:
        return object_name(self.collection_id, self.filename)

    def info(self) -> "VersionInfo":
        return VersionInfo(self.id, self.number, self.size, self.created_at)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "collectionId": self.collection_id,
            "versionNumber": self.number,
            "filename": self.filename,
            "filesize": self.size,
            "sha256": self.sha256,
            "uploadedBySessionId": self.uploaded_by_session_id,
            "user": self.user,
            "CreatedAt": format_time(self.created_at),
            "UpdatedAt": format_time(self.updated_at),
            "DeletedAt": format_time(self.deleted_at),
        }


@dataclass(frozen=True)
class VersionInfo:
    """What rotation and quotas need to know about a stored version."""

    id: str
    number: int
    size: int
    created_at: datetime


def rotate_out(collection: Collection, versions, now: datetime) -> list:
    """The versions to delete once the collection holds ``versions`` (the new one included).

    ``fifo`` keeps the newest ``maxBackupsCount``. ``fifo-plus-older`` also keeps up to ``maxOlderCopies`` of the
    older ones, newest first, as long as they are not older than ``keepLastOlderNotMoreThan`` (no age limit when it
    is not set).
    """
    ordered = sorted(versions, key=lambda v: v.number, reverse=True)
    older = ordered[collection.max_backups_count:]
    if collection.strategy_name != STRATEGY_FIFO_PLUS_OLDER:
        return sorted(older, key=lambda v: v.number)
    kept = 0
    doomed = []
    limit = collection.keep_last_older_not_more_than
    for version in older:
        young_enough = limit is None or version.created_at >= now - timedelta(seconds=limit)
        if young_enough and kept < collection.max_older_copies:
            kept += 1
        else:
            doomed.append(version)
    return sorted(doomed, key=lambda v: v.number)


def rotated_out_by_next_upload(collection: Collection, versions, now: datetime) -> list:
    """The existing versions that the next upload will rotate out (it counts as the newest version)."""
    upcoming = VersionInfo("", max((v.number for v in versions), default=0) + 1, 0, now)
    return [v for v in rotate_out(collection, [*versions, upcoming], now) if v is not upcoming]


def allowed_upload_size(collection: Collection, versions, now: datetime) -> int:
    """How many bytes the next upload may have.

    ``extra = maxCollectionSize − maxBackupsCount × maxOneVersionSize`` is shared by versions larger than
    ``maxOneVersionSize``; versions the upload will rotate out do not count. The result is also capped so that the
    versions that remain plus the new one never exceed ``maxCollectionSize`` (this only binds with
    ``fifo-plus-older``, whose older copies are not part of the extra-space formula).
    """
    soft = collection.max_one_version_size
    leaving = {v.id for v in rotated_out_by_next_upload(collection, versions, now)}
    remaining = [v for v in versions if v.id not in leaving]
    extra = collection.max_collection_size - collection.max_backups_count * soft
    if extra <= 0:
        budget = soft
    else:
        used_extra = sum(v.size - soft for v in remaining if v.size > soft)
        budget = soft + max(0, extra - used_extra)
    hard_room = collection.max_collection_size - sum(v.size for v in remaining)
    return max(0, min(budget, hard_room))
