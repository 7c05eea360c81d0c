"""Recorded deletions: the objects of deleted versions, owned by their record until the store confirms that they
are gone (``db.deletions``; a version's removal records them, db/versions.py)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from backup_repository.db.rows import Primitives, timestamp

_COLUMNS = "object_name, collection_id, version_number, recorded_at, attempts, last_error"


@dataclass(frozen=True)
class PendingDeletion:
    object_name: str
    collection_id: str
    version_number: int
    recorded_at: datetime
    attempts: int
    last_error: str


class Deletions:
    """The ``pending_deletions`` table. ``db``: the primitives of a backend (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def done(self, object_name: str) -> None:
        """The store confirmed that the object is gone: drop its record."""
        await self._db.execute("DELETE FROM pending_deletions WHERE object_name = %s", (object_name,))

    async def failed(self, object_name: str, error: str) -> None:
        await self._db.execute(
            "UPDATE pending_deletions SET attempts = attempts + 1, last_error = %s WHERE object_name = %s",
            (error[:1000], object_name),
        )

    async def recorded_before(self, recorded_before: datetime, limit: int = 1000) -> list[PendingDeletion]:
        """PendingDeletion records made before ``recorded_before``, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM pending_deletions WHERE recorded_at < %s ORDER BY recorded_at LIMIT %s",
            (recorded_before, limit),
        )
        return [_deletion(row) for row in rows]

    async def refused(self, collection_id: Optional[str] = None) -> dict[str, list[PendingDeletion]]:
        """{collection id: [PendingDeletion, ...]} of the deletions the store has refused (or failed) at least once
        (collection health, metrics)."""
        sql = f"SELECT {_COLUMNS} FROM pending_deletions WHERE attempts > 0"
        params: Sequence[str] = ()
        if collection_id is not None:
            sql += " AND collection_id = %s"
            params = (collection_id,)
        found: dict[str, list[PendingDeletion]] = {}
        for row in await self._db.fetchall(sql + " ORDER BY collection_id, version_number", params):
            found.setdefault(row[1], []).append(_deletion(row))
        return found


def _deletion(row) -> PendingDeletion:
    return PendingDeletion(row[0], row[1], int(row[2]), timestamp(row[3]), int(row[4]), row[5])
