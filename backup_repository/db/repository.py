"""The repository interface shared by both backends.

A backend provides four primitives — ``execute``, ``fetchone``, ``fetchall`` and ``transaction()`` — with SQL
written in the ``%s`` parameter style; everything else (queries, migrations) is written once, here.
"""

import abc
import logging
from datetime import datetime
from typing import Optional

from backup_repository.db.schema import LATEST, MIGRATIONS
from backup_repository.domain.sessions import GrantedAccess, utcnow

log = logging.getLogger(__name__)

_SESSION_COLUMNS = (
    "id, expires_at, deactivated, description, requester_ip, user_name, access_key_name, "
    "created_at, updated_at, deleted_at"
)


class DatabaseError(Exception):
    """The database cannot be reached or refused an operation; the message says what to check."""


class Repository(abc.ABC):
    name = "database"

    # --- primitives, implemented by each backend -------------------------------------------------
    @abc.abstractmethod
    async def open(self):
        ...

    @abc.abstractmethod
    async def close(self):
        ...

    @abc.abstractmethod
    async def execute(self, sql: str, params=()) -> int:
        ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, params=()):
        ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params=()):
        ...

    @abc.abstractmethod
    def transaction(self):
        """An async context manager yielding an object with execute/fetchone/fetchall in one transaction."""

    async def _lock_migrations(self, tx):
        """Serialize concurrent start-ups of several servers on one database (PostgreSQL overrides)."""

    # --- schema ---------------------------------------------------------------------------------
    async def migrate(self):
        """Bring the schema to the latest version; idempotent, and safe when several servers start at once."""
        async with self.transaction() as tx:
            await self._lock_migrations(tx)
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            rows = await tx.fetchall("SELECT version FROM schema_migrations")
            applied = {row[0] for row in rows}
            if applied and max(applied) > LATEST:
                raise DatabaseError(
                    f"the database schema is at version {max(applied)}, newer than this server knows ({LATEST}); "
                    "upgrade the server"
                )
            for version, description, statements in MIGRATIONS:
                if version in applied:
                    continue
                log.info("applying database migration %d: %s", version, description)
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                    (version, description, utcnow()),
                )

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) FROM schema_migrations")
        return row[0] or 0

    async def ping(self):
        await self.fetchone("SELECT 1")

    # --- granted accesses -----------------------------------------------------------------------
    async def create_session(self, session: GrantedAccess):
        await self.execute(
            f"INSERT INTO granted_accesses ({_SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                session.id, session.expires_at, session.deactivated, session.description, session.requester_ip,
                session.user, session.access_key_name, session.created_at, session.updated_at, session.deleted_at,
            ),
        )

    async def get_session(self, session_id: str) -> Optional[GrantedAccess]:
        row = await self.fetchone(f"SELECT {_SESSION_COLUMNS} FROM granted_accesses WHERE id = %s", (session_id,))
        return _session(row) if row else None

    async def deactivate_session(self, session_id: str, now: datetime) -> bool:
        count = await self.execute(
            "UPDATE granted_accesses SET deactivated = %s, updated_at = %s WHERE id = %s",
            (True, now, session_id),
        )
        return count > 0

    async def list_sessions(self, user_name: str, limit: int = 100) -> list:
        rows = await self.fetchall(
            f"SELECT {_SESSION_COLUMNS} FROM granted_accesses WHERE user_name = %s "
            "ORDER BY created_at DESC, id LIMIT %s",
            (user_name, limit),
        )
        return [_session(row) for row in rows]


def _session(row) -> GrantedAccess:
    return GrantedAccess(
        id=row[0], expires_at=row[1], deactivated=bool(row[2]), description=row[3], requester_ip=row[4],
        user=row[5], access_key_name=row[6], created_at=row[7], updated_at=row[8], deleted_at=row[9],
    )
