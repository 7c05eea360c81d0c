"""The results of verifying versions against the store (``db.integrity``; services/integrity.py verifies)."""

from datetime import datetime

from backup_repository.db.rows import Primitives, timestamp
from backup_repository.domain.versions import Version


#: A failed check: (version number, filename, message).
Problem = tuple[int, str, str]


class IntegrityChecks:
    """The ``integrity_checks`` table, one row per version checked. ``db``: the primitives of a backend
    (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def record(self, version: Version, ok: bool, message: str, now: datetime) -> None:
        await self._db.execute(
            "INSERT INTO integrity_checks (version_id, collection_id, checked_at, ok, message) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version_id) DO UPDATE SET checked_at = excluded.checked_at, "
            "ok = excluded.ok, message = excluded.message",
            (version.id, version.collection_id, now, ok, message),
        )

    async def failing_collections(self) -> dict[str, tuple[Problem, ...]]:
        """{collection id: ((version number, filename, message), ...)} of the collections with failed checks."""
        rows = await self._db.fetchall(
            "SELECT i.collection_id, v.version_number, v.filename, i.message FROM integrity_checks i "
            "JOIN versions v ON v.id = i.version_id WHERE i.ok = %s ORDER BY i.collection_id, v.version_number",
            (False,),
        )
        result: dict[str, list[Problem]] = {}
        for row in rows:
            result.setdefault(row[0], []).append((row[1], row[2], row[3]))
        return {collection_id: tuple(problems) for collection_id, problems in result.items()}

    async def last_verifications(self) -> dict[str, datetime]:
        """{collection id: when a version of it was last verified} for every collection ever verified."""
        rows = await self._db.fetchall(
            "SELECT collection_id, MAX(checked_at) FROM integrity_checks GROUP BY collection_id")
        return {row[0]: timestamp(row[1]) for row in rows}

    async def problems(self, collection_id: str) -> list[Problem]:
        """(version number, filename, message) of the failed checks of the collection's current versions."""
        rows = await self._db.fetchall(
            "SELECT v.version_number, v.filename, i.message FROM integrity_checks i "
            "JOIN versions v ON v.id = i.version_id "
            "WHERE i.collection_id = %s AND i.ok = %s ORDER BY v.version_number",
            (collection_id, False),
        )
        return [(row[0], row[1], row[2]) for row in rows]
