"""Stored versions and their numbers (``db.versions``).

A version's row comes and goes in one transaction with what it hands over: registering it takes the upload's
pending record (only while the upload still owns it), deleting it records the deletion of its object.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Optional

from backup_repository.db.rows import Primitives, timestamp
from backup_repository.domain.versions import Version, VersionInfo
from backup_repository.failures import LeaseLost

#: (versions count, used bytes, the latest version's time)
VersionStats = tuple[int, int, Optional[datetime]]
#: (versions count, used bytes, the latest version's time, the largest version's size)
VersionSummary = tuple[int, int, Optional[datetime], int]

_COLUMNS = (
    "id, collection_id, version_number, filename, filesize, sha256, uploaded_by_session_id, user_name, "
    "created_at, updated_at, deleted_at"
)


class Versions:
    """The ``versions`` and ``version_counters`` tables. ``db``: the primitives of a backend (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def reserve_number(self, collection_id: str) -> int:
        """The next version number of a collection: the highest ever given + 1, never reused."""
        row = await self._db.fetchone(
            "INSERT INTO version_counters (collection_id, last_number) "
            "VALUES (%s, COALESCE((SELECT MAX(version_number) FROM versions WHERE collection_id = %s), 0) + 1) "
            "ON CONFLICT (collection_id) DO UPDATE SET last_number = version_counters.last_number + 1 "
            "RETURNING last_number",
            (collection_id, collection_id),
        )
        return row[0]

    async def release_number(self, collection_id: str, number: int) -> bool:
        """Give back a number reserved by an upload that failed, unless a later one was reserved since."""
        count = await self._db.execute(
            "UPDATE version_counters SET last_number = last_number - 1 WHERE collection_id = %s AND last_number = %s",
            (collection_id, number),
        )
        return count > 0

    async def insert(self, version: Version, pending_object: Optional[str] = None,
                     holder: Optional[str] = None) -> None:
        """Register a stored version. With ``pending_object``, its pending-upload row goes in the same transaction,
        and only while the upload ``holder`` still owns it: when the janitor has taken the row over (the upload's
        lease ran out), nothing is registered and LeaseLost is raised (docs/scaling.md#what-is-guaranteed)."""
        async with self._db.transaction() as tx:
            if pending_object is not None:
                owned = await tx.execute("DELETE FROM pending_uploads WHERE object_name = %s AND holder = %s",
                                         (pending_object, holder or ""))
                if owned != 1:
                    raise LeaseLost(pending_object)
            await tx.execute(
                f"INSERT INTO versions ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version.id, version.collection_id, version.number, version.filename, version.size,
                    version.sha256, version.uploaded_by_session_id, version.user, version.created_at,
                    version.updated_at, version.deleted_at,
                ),
            )

    async def all(self) -> list[Version]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM versions ORDER BY collection_id, version_number")
        return [_version(row) for row in rows]

    async def of_collection(self, collection_id: str) -> list[Version]:
        """The collection's versions, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM versions WHERE collection_id = %s ORDER BY version_number",
            (collection_id,),
        )
        return [_version(row) for row in rows]

    async def get(self, collection_id: str, number: int) -> Optional[Version]:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM versions WHERE collection_id = %s AND version_number = %s",
            (collection_id, number),
        )
        return _version(row) if row else None

    async def latest(self, collection_id: str) -> Optional[Version]:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM versions WHERE collection_id = %s "
            "ORDER BY version_number DESC LIMIT 1",
            (collection_id,),
        )
        return _version(row) if row else None

    async def stats(self, collection_ids: Optional[Sequence[str]] = None) -> dict[str, VersionStats]:
        """{collection id: (versions count, used bytes, latest version time)} for every collection with versions,
        or for those of ``collection_ids`` (a few: a tenant's)."""
        select = "SELECT collection_id, COUNT(*), COALESCE(SUM(filesize), 0), MAX(created_at) FROM versions "
        if collection_ids is None:
            rows = await self._db.fetchall(select + "GROUP BY collection_id")
        elif not collection_ids:
            rows = []
        else:
            marks = ", ".join(["%s"] * len(collection_ids))
            rows = await self._db.fetchall(select + f"WHERE collection_id IN ({marks}) GROUP BY collection_id",
                                           tuple(collection_ids))
        return {row[0]: (int(row[1]), int(row[2]), timestamp(row[3])) for row in rows}

    async def summaries(self) -> dict[str, VersionSummary]:
        """{collection id: (versions count, used bytes, latest version time, largest version)} of every collection
        with versions, in one query (the collection metrics, services/monitoring.py)."""
        rows = await self._db.fetchall(
            "SELECT collection_id, COUNT(*), COALESCE(SUM(filesize), 0), MAX(created_at), COALESCE(MAX(filesize), 0) "
            "FROM versions GROUP BY collection_id"
        )
        return {row[0]: (int(row[1]), int(row[2]), timestamp(row[3]), int(row[4])) for row in rows}

    async def infos(self, collection_ids: Iterable[str]) -> dict[str, list[VersionInfo]]:
        """{collection id: [VersionInfo, ...]} of the given collections (those with a minimumRetention, for the
        collection metrics), a query per 500 collections."""
        found: dict[str, list[VersionInfo]] = {}
        collection_ids = list(collection_ids)
        for start in range(0, len(collection_ids), 500):
            part = collection_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(part))
            rows = await self._db.fetchall(
                f"SELECT collection_id, id, version_number, filesize, created_at FROM versions "
                f"WHERE collection_id IN ({marks})", tuple(part))
            for row in rows:
                found.setdefault(row[0], []).append(
                    VersionInfo(row[1], int(row[2]), int(row[3]), timestamp(row[4])))
        return found

    async def delete(self, version: Version, now: datetime) -> bool:
        """Delete a version's row (and its integrity check) and record the deletion of its object, in one
        transaction: from then on the object is owned by the ``pending_deletions`` row (db/deletions.py) until the
        store confirms it is gone."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM integrity_checks WHERE version_id = %s", (version.id,))
            if await tx.execute("DELETE FROM versions WHERE id = %s", (version.id,)) == 0:
                return False
            await tx.execute(
                "INSERT INTO pending_deletions (object_name, collection_id, version_number, recorded_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (object_name) DO NOTHING",
                (version.object_name, version.collection_id, version.number, now),
            )
        return True


def _version(row) -> Version:
    return Version(
        id=row[0], collection_id=row[1], number=row[2], filename=row[3], size=row[4], sha256=row[5],
        uploaded_by_session_id=row[6], user=row[7], created_at=row[8], updated_at=row[9], deleted_at=row[10],
    )
