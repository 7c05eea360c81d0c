"""The repository shared by both backends: the database's life (open, migrate, close) and its parts, one per
aggregate, each in a module of its own.

A backend provides four primitives — ``execute``, ``fetchone``, ``fetchall`` and ``transaction()`` — with SQL
written in the ``%s`` parameter style; every query is written once, in the part that owns its table:

    db.sessions         sessions.py    granted accesses: the sessions logins open and tokens are checked against
    db.versions         versions.py    stored versions and their numbers
    db.deletions        deletions.py   the objects of deleted versions, until the store confirms them gone
    db.pending_uploads  pending.py     uploads in progress, with their leases (crash recovery)
    db.upload_locks     locks.py       one upload at a time per collection (PostgreSQL: advisory locks)
    db.integrity        integrity.py   the results of verifying versions against the store
"""

import abc
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Optional

from backup_repository.db.deletions import Deletions
from backup_repository.db.integrity import IntegrityChecks
from backup_repository.db.locks import UploadLocking
from backup_repository.db.pending import PendingUploads
from backup_repository.db.rows import Statements, timestamp
from backup_repository.db.schema import LATEST, MIGRATIONS
from backup_repository.db.sessions import Sessions
from backup_repository.db.versions import Versions
from backup_repository.domain.times import utcnow
from backup_repository.failures import DatabaseError

log = logging.getLogger(__name__)


#: Tables that this server creates, and the Go server's metadata table: found in a database this server never
#: initialised, they belong to someone else and must not be mixed with ours.
FOREIGN_TABLES = frozenset({"granted_accesses", "versions", "version_counters", "upload_locks", "uploaded_versions"})


class Repository(abc.ABC):
    """A backend's primitives and the parts built on them. ``upload_locks``: how the backend keeps one upload at a
    time per collection (``locks.UploadLocks`` on the primitives, or the backend's own)."""

    def __init__(self, upload_locks: UploadLocking):
        self.sessions = Sessions(self)
        self.versions = Versions(self)
        self.deletions = Deletions(self)
        self.pending_uploads = PendingUploads(self)
        self.integrity = IntegrityChecks(self)
        self.upload_locks = upload_locks

    # --- primitives, implemented by each backend -------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date; DatabaseError saying what to check when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        ...

    @abc.abstractmethod
    def describe(self) -> str:
        ...

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence = ()) -> int:
        ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Sequence = ()) -> Any:
        ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Sequence = ()) -> list:
        ...

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Statements]:
        """An async context manager yielding an object with execute/fetchone/fetchall in one transaction."""

    async def _lock_migrations(self, tx: Statements) -> None:
        """Serialize concurrent start-ups of several servers on one database (PostgreSQL overrides)."""

    @abc.abstractmethod
    async def _table_names(self, tx: Statements) -> set:
        """Names of the tables in the database (the current schema for PostgreSQL)."""

    # --- schema ---------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Bring the schema to the latest version; idempotent, and safe when several servers start at once."""
        try:
            await self._migrate()
        except DatabaseError:
            raise
        except Exception as exc:  # the driver's own errors: say what failed, never a traceback
            reason = " ".join(str(exc).split())
            raise DatabaseError(f"cannot bring the {self.describe()} schema up to date: {reason}") from exc

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            await self._lock_migrations(tx)
            if "schema_migrations" not in await self._table_names(tx):
                foreign = sorted((await self._table_names(tx)) & FOREIGN_TABLES)
                if foreign:
                    raise DatabaseError(
                        f"the database already holds tables named {', '.join(foreign)} that this server did not "
                        "create (another application, or the Go server's metadata); give backup-repository a "
                        "database of its own (docs/migrating.md)"
                    )
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

    async def created_at(self) -> Optional[datetime]:
        """When this database was first set up (its first migration)."""
        row = await self.fetchone("SELECT MIN(applied_at) FROM schema_migrations")
        return timestamp(row[0]) if row else None

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")

    # --- across the parts -----------------------------------------------------------------------
    async def accounted_names(self) -> set[str]:
        """Every object name the database accounts for: versions, pending uploads, recorded deletions."""
        names = {version.object_name for version in await self.versions.all()}
        for table in ("pending_uploads", "pending_deletions"):
            names.update(row[0] for row in await self.fetchall(f"SELECT object_name FROM {table}"))
        return names
