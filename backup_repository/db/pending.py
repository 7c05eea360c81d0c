"""Uploads in progress, each recorded with a lease so that what a crashed server was writing is found and removed
(``db.pending_uploads``; the janitor claims what has run out, services/janitor.py)."""

from datetime import datetime, timedelta

from backup_repository.db.rows import Primitives


class PendingUploads:
    """The ``pending_uploads`` table. ``db``: the primitives of a backend (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def add(self, object_name: str, collection_id: str, now: datetime, holder: str, ttl: float) -> bool:
        """Record an upload to ``object_name`` owned by ``holder``, its lease running ``ttl`` seconds; False when
        the name is recorded already (an earlier upload's leftover that the janitor has not removed yet)."""
        return await self._db.execute(
            "INSERT INTO pending_uploads (object_name, collection_id, started_at, holder, expires_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (object_name) DO NOTHING",
            (object_name, collection_id, now, holder, now + timedelta(seconds=ttl)),
        ) > 0

    async def renew(self, object_name: str, holder: str, now: datetime, ttl: float) -> bool:
        """Extend the upload's lease; False when the row is no longer the holder's (the janitor took it over)."""
        return await self._db.execute(
            "UPDATE pending_uploads SET expires_at = %s WHERE object_name = %s AND holder = %s",
            (now + timedelta(seconds=ttl), object_name, holder),
        ) > 0

    async def remove(self, object_name: str, holder: str) -> None:
        await self._db.execute("DELETE FROM pending_uploads WHERE object_name = %s AND holder = %s",
                               (object_name, holder))

    async def all(self) -> list[tuple[str, str, str]]:
        """(object name, collection id, holder) of every recorded upload."""
        rows = await self._db.fetchall(
            "SELECT object_name, collection_id, holder FROM pending_uploads ORDER BY started_at")
        return [(row[0], row[1], row[2]) for row in rows]

    async def claim_abandoned(self, claimant: str, expired_before: datetime,
                              legacy_started_before: datetime) -> list[tuple[str, str]]:
        """Take over the pending uploads whose lease ran out before ``expired_before`` (rows written by earlier
        servers, without a lease: started before ``legacy_started_before``), and those ``claimant`` took over
        before; returns their (object name, collection id). A claimed row can no longer be committed."""
        await self._db.execute(
            "UPDATE pending_uploads SET holder = %s WHERE holder <> %s AND "
            "((holder <> '' AND expires_at < %s) OR (holder = '' AND started_at < %s))",
            (claimant, claimant, expired_before, legacy_started_before),
        )
        rows = await self._db.fetchall(
            "SELECT object_name, collection_id FROM pending_uploads WHERE holder = %s ORDER BY started_at",
            (claimant,),
        )
        return [(row[0], row[1]) for row in rows]
