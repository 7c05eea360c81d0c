"""Stored versions of a collection, and the rules that decide which to keep: rotation and the size budget
(docs/api.md#upload). Plain functions over plain values, so every edge case is a unit test."""

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Optional

from backup_repository.domain.collections import STRATEGY_FIFO_PLUS_OLDER, Collection
from backup_repository.domain.errors import TooManyRequests
from backup_repository.domain.times import format_time

COLLECTION_FULL = "collection is full: its oldest version is protected until {}"


class ProtectedVersionsInTheWay(TooManyRequests):
    """An upload refused because storing it would delete a version younger than the collection's
    ``minimumRetention`` (429 with Retry-After: docs/api.md#minimum-retention)."""

    reason = "protected"


def free_from(until: datetime) -> str:
    """``until`` as the API shows it: RFC 3339, rounded up to the whole second from which the version is free."""
    return format_time((until + timedelta(microseconds=999_999)).replace(microsecond=0))


def collection_full(until: datetime, now: datetime) -> ProtectedVersionsInTheWay:
    """The refusal of an upload that would need the room of a version protected until ``until``."""
    seconds = math.ceil((until - now).total_seconds())
    return ProtectedVersionsInTheWay(COLLECTION_FULL.format(free_from(until)), retry_after=max(1, seconds))


def object_name(collection_id: str, filename: str) -> str:
    """Where a version is stored: ``{collectionId}/{filename}`` (docs/configuration.md#storage-urls)."""
    return f"{collection_id}/{filename}"


@dataclass(frozen=True)
class Version:
    """A registered version: visible only once its object is completely stored (docs/api.md#upload); the API
    shows it as http/presenters/versions.py writes it."""

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


@dataclass(frozen=True)
class VersionInfo:
    """What rotation and quotas need to know about a stored version."""

    id: str
    number: int
    size: int
    created_at: datetime


def protected_until(collection: Collection, version) -> Optional[datetime]:
    """When ``version`` may be deleted, the collection's ``minimumRetention`` after it was stored; None without a
    floor (docs/configuration.md#minimum-retention)."""
    if collection.minimum_retention is None:
        return None
    return version.created_at + timedelta(seconds=collection.minimum_retention)


def is_protected(collection: Collection, version, now: datetime) -> bool:
    until = protected_until(collection, version)
    return until is not None and now < until


def _strategy_doomed(collection: Collection, versions, now: datetime) -> list:
    """The versions the rotation strategy wants gone, oldest first, whatever their age.

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


def rotate_out(collection: Collection, versions, now: datetime) -> list:
    """The versions to delete once the collection holds ``versions`` (the new one included): those the strategy
    wants gone, except any younger than the collection's ``minimumRetention``, which no path deletes."""
    return [v for v in _strategy_doomed(collection, versions, now) if not is_protected(collection, v, now)]


def _doomed_by_next_upload(collection: Collection, versions, now: datetime) -> list:
    """The existing versions the strategy wants gone once the next upload counts as the newest, whatever their
    age."""
    upcoming = VersionInfo("", max((v.number for v in versions), default=0) + 1, 0, now)
    return [v for v in _strategy_doomed(collection, [*versions, upcoming], now) if v is not upcoming]


def rotated_out_by_next_upload(collection: Collection, versions, now: datetime) -> list:
    """The existing versions that the next upload will rotate out (it counts as the newest version)."""
    return [v for v in _doomed_by_next_upload(collection, versions, now) if not is_protected(collection, v, now)]


def kept_past_rotation(collection: Collection, versions, now: datetime) -> list:
    """Versions the strategy would delete after the next upload but their floor keeps, oldest first."""
    return [v for v in _doomed_by_next_upload(collection, versions, now) if is_protected(collection, v, now)]


def retention_blocks_next_upload(collection: Collection, versions, now: datetime) -> Optional[datetime]:
    """When the next upload would have to push out a protected version to keep ``maxBackupsCount`` (and
    ``maxOlderCopies``): the time from which it no longer would — the end of the protection of the youngest such
    version. None when the next upload may be stored (docs/api.md#minimum-retention).

    Versions the strategy wants gone anyway (an older copy past ``keepLastOlderNotMoreThan``) do not block: they
    are kept until their floor has passed, and count against the size budget meanwhile."""
    if collection.minimum_retention is None:
        return None
    already = {v.id for v in _strategy_doomed(collection, versions, now)}
    pushed_out = [v for v in kept_past_rotation(collection, versions, now) if v.id not in already]
    return max(filter(None, (protected_until(collection, v) for v in pushed_out)), default=None)


def allowed_upload_size(collection: Collection, versions, now: datetime) -> int:
    """How many bytes the next upload may have.

    ``extra = maxCollectionSize − maxBackupsCount × maxOneVersionSize`` is shared by versions larger than
    ``maxOneVersionSize``; versions the upload will rotate out do not count (a version its ``minimumRetention``
    keeps does). The result is also capped so that the versions that remain plus the new one never exceed
    ``maxCollectionSize`` (this only binds with ``fifo-plus-older``, whose older copies are not part of the
    extra-space formula, or with a floor).
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


@dataclass(frozen=True)
class UploadAllowance:
    """What the next upload of a collection may store: ``allowed`` bytes; without the collection's floor it could
    store ``without_floor`` bytes, and ``protected_until`` says when the first version that the floor keeps in the
    way may go (None when the floor takes no room)."""

    allowed: int
    without_floor: int
    protected_until: Optional[datetime] = None

    def refusal(self, received: int, now: datetime):
        """The error for a body of ``received`` bytes above ``allowed``: the floor's when only the floor is in
        the way, else None (the caller's plain 413)."""
        if self.protected_until is not None and received <= self.without_floor:
            return collection_full(self.protected_until, now)
        return None


def upload_allowance(collection: Collection, versions, now: datetime) -> UploadAllowance:
    allowed = allowed_upload_size(collection, versions, now)
    if collection.minimum_retention is None:
        return UploadAllowance(allowed, allowed)
    without_floor = allowed_upload_size(replace(collection, minimum_retention=None), versions, now)
    kept = kept_past_rotation(collection, versions, now)
    until = min(filter(None, (protected_until(collection, v) for v in kept)), default=None)
    return UploadAllowance(allowed, without_floor, until if allowed < without_floor else None)
