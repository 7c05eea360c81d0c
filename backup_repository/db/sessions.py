"""Granted accesses: the sessions that logins open and tokens are checked against (``db.sessions``)."""

from datetime import datetime
from typing import Optional

from backup_repository.db.rows import Primitives
from backup_repository.domain.sessions import GrantedAccess

_COLUMNS = (
    "id, expires_at, deactivated, description, requester_ip, user_name, access_key_name, "
    "created_at, updated_at, deleted_at, credential"
)


class Sessions:
    """The ``granted_accesses`` table. ``db``: the primitives of a backend (db/repository.py)."""

    def __init__(self, db: Primitives):
        self._db = db

    async def create(self, session: GrantedAccess) -> None:
        await self._db.execute(
            f"INSERT INTO granted_accesses ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                session.id, session.expires_at, session.deactivated, session.description, session.requester_ip,
                session.user, session.access_key_name, session.created_at, session.updated_at, session.deleted_at,
                session.credential,
            ),
        )

    async def get(self, session_id: str) -> Optional[GrantedAccess]:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM granted_accesses WHERE id = %s", (session_id,))
        return _session(row) if row else None

    async def deactivate(self, session_id: str, now: datetime) -> bool:
        count = await self._db.execute(
            "UPDATE granted_accesses SET deactivated = %s, updated_at = %s WHERE id = %s",
            (True, now, session_id),
        )
        return count > 0

    async def bind_credential(self, session_id: str, credential: str) -> None:
        """Bind a session opened before sessions recorded their credential (it has none yet) to ``credential``."""
        await self._db.execute("UPDATE granted_accesses SET credential = %s WHERE id = %s AND credential = ''",
                               (credential, session_id))

    async def revoke(self, user_name: str, now: datetime, access_key_name: Optional[str] = None,
                     except_credential: Optional[str] = None) -> int:
        """Deactivate the active sessions of a user (or only those of one access key, ``""`` for its own password),
        except those bound to ``except_credential``; idempotent."""
        sql = "UPDATE granted_accesses SET deactivated = %s, updated_at = %s WHERE user_name = %s AND deactivated = %s"
        params = [True, now, user_name, False]
        if access_key_name is not None:
            sql += " AND access_key_name = %s"
            params.append(access_key_name)
        if except_credential is not None:
            sql += " AND credential <> %s"
            params.append(except_credential)
        return await self._db.execute(sql, tuple(params))

    async def of_user(self, user_name: str, limit: int = 100) -> list[GrantedAccess]:
        """The user's sessions, newest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM granted_accesses WHERE user_name = %s "
            "ORDER BY created_at DESC, id LIMIT %s",
            (user_name, limit),
        )
        return [_session(row) for row in rows]


def _session(row) -> GrantedAccess:
    return GrantedAccess(
        id=row[0], expires_at=row[1], deactivated=bool(row[2]), description=row[3], requester_ip=row[4],
        user=row[5], access_key_name=row[6], created_at=row[7], updated_at=row[8], deleted_at=row[9],
        credential=row[10],
    )
