"""One upload at a time per collection (``db.upload_locks``): a lease in the ``upload_locks`` table, renewed while
the upload runs and taken over once it has run out. PostgreSQL holds advisory locks instead, which die with their
connection (``AdvisoryUploadLocks`` in db/postgres.py); both answer the same three calls (``UploadLocking``)."""

from datetime import datetime, timedelta
from typing import Protocol

from backup_repository.db.rows import Primitives


class UploadLocking(Protocol):
    """The three calls of a collection's upload lock, whichever way a backend keeps it."""

    async def acquire(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """Take the collection's lock for ``holder`` unless another holder has it; the lock lasts ``ttl`` seconds
        past ``now`` unless renewed (where it is a lease)."""
        ...

    async def renew(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """Keep the lock; False when it is no longer the holder's."""
        ...

    async def release(self, collection_id: str, holder: str) -> None:
        ...


class UploadLocks(UploadLocking):
    """Leases in the ``upload_locks`` table. ``db``: the primitives of a backend (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def acquire(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """Take the collection's upload lease unless another holder has a live one."""
        count = await self._db.execute(
            "INSERT INTO upload_locks (collection_id, holder, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (collection_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE upload_locks.expires_at < %s OR upload_locks.holder = excluded.holder",
            (collection_id, holder, now + timedelta(seconds=ttl), now),
        )
        return count > 0

    async def renew(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """Extend the holder's lease; False when it is no longer the holder's."""
        count = await self._db.execute(
            "UPDATE upload_locks SET expires_at = %s WHERE collection_id = %s AND holder = %s",
            (now + timedelta(seconds=ttl), collection_id, holder),
        )
        return count > 0

    async def release(self, collection_id: str, holder: str) -> None:
        await self._db.execute("DELETE FROM upload_locks WHERE collection_id = %s AND holder = %s",
                               (collection_id, holder))
