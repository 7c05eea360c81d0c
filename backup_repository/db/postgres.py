"""The shared metadata database: PostgreSQL through an aiopg connection pool.

Several servers may share it: schema migrations are serialized with an advisory lock, and the per-collection upload
lock is a session-level advisory lock held on a connection of its own for the length of the upload, so it dies with
its holder — a killed server's lock is gone as soon as PostgreSQL sees its connection close.

When PostgreSQL goes away (stopped, restarted, unreachable), every operation raises DatabaseUnavailable (503 for
clients) instead of hanging; broken pooled connections are dropped and new ones are made once it is back.
"""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Optional

import aiopg
import psycopg2

from backup_repository.db.locks import UploadLocking
from backup_repository.db.repository import Repository
from backup_repository.failures import DatabaseError, DatabaseUnavailable

log = logging.getLogger(__name__)

#: Key of the advisory lock that serializes schema migrations across servers sharing one database.
MIGRATION_LOCK_KEY = 7_180_420_001
#: Connection errors: the server is down or unreachable, not a bad query.
_GONE = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError, asyncio.TimeoutError)


def upload_lock_key(collection_id: str) -> int:
    """A signed 64-bit advisory-lock key for a collection's upload lock."""
    digest = hashlib.sha256(f"backup-repository upload {collection_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _unavailable_when_gone(describe):
    try:
        yield
    except _GONE as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(f"the {describe()} is not reachable: {reason}") from exc


class PostgresDatabase(Repository):
    def __init__(self, host: str, port: int, user: str, password: str, dbname: str,
                 minsize: int = 1, maxsize: int = 10, timeout: float = 30.0):
        self._advisory_locks = AdvisoryUploadLocks(self._connect_alone, self.describe)
        super().__init__(upload_locks=self._advisory_locks)
        self._params: dict[str, Any] = dict(host=host, port=port, user=user, password=password or "",
                                            dbname=dbname)
        self._minsize, self._maxsize, self._timeout = minsize, maxsize, timeout
        self._pool: Optional[aiopg.Pool] = None

    def describe(self) -> str:
        p = self._params
        return f"PostgreSQL database {p['dbname']!r} at {p['host']}:{p['port']} as {p['user']!r}"

    async def open(self):
        try:
            self._pool = await aiopg.create_pool(
                minsize=self._minsize, maxsize=self._maxsize, timeout=self._timeout,
                options="-c timezone=UTC", connect_timeout=10, **self._params,
            )
        except (psycopg2.Error, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise DatabaseError(
                f"cannot connect to the {self.describe()}: {reason}; check --db-hostname, --db-port, --db-user, "
                "--db-password and --db-name"
            ) from exc
        await self.migrate()

    @property
    def _connections(self) -> aiopg.Pool:
        if self._pool is None:
            raise DatabaseError(f"the {self.describe()} is not open")
        return self._pool

    async def close(self):
        self._advisory_locks.close()
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def execute(self, sql, params=()) -> int:
        with _unavailable_when_gone(self.describe):
            async with self._connections.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                return cur.rowcount

    async def fetchone(self, sql, params=()):
        with _unavailable_when_gone(self.describe):
            async with self._connections.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                return await cur.fetchone()

    async def fetchall(self, sql, params=()) -> list:
        with _unavailable_when_gone(self.describe):
            async with self._connections.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()

    async def _connect_alone(self):
        """A connection of its own, outside the pool (an upload lock lives as long as its connection)."""
        with _unavailable_when_gone(self.describe):
            return await aiopg.connect(timeout=self._timeout, connect_timeout=10, **self._params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator["_PostgresTransaction"]:
        # aiopg connections are in autocommit mode; a transaction is an explicit BEGIN ... COMMIT on one of them.
        with _unavailable_when_gone(self.describe):
            async with self._connections.acquire() as conn, conn.cursor() as cur:
                await cur.execute("BEGIN")
                try:
                    yield _PostgresTransaction(cur)
                except BaseException:
                    if not conn.closed:
                        await cur.execute("ROLLBACK")
                    raise
                await cur.execute("COMMIT")

    async def _lock_migrations(self, tx):
        await tx.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))

    async def _table_names(self, tx) -> set:
        rows = await tx.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row[0] for row in rows}


class AdvisoryUploadLocks(UploadLocking):
    """Upload locks as session-level advisory locks, each held on a connection of its own (``connect()``) for the
    length of the upload: a killed server's lock is gone as soon as PostgreSQL sees its connection close, with no
    lease to run out (the same three calls as ``locks.UploadLocks``; ``now`` and ``ttl`` are not needed)."""

    def __init__(self, connect, describe):
        self._connect, self._describe = connect, describe
        self._held = {}  # holder -> the dedicated connection holding the advisory lock

    async def acquire(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        conn = await self._connect()
        try:
            with _unavailable_when_gone(self._describe):
                async with conn.cursor() as cur:
                    await cur.execute("SELECT pg_try_advisory_lock(%s)", (upload_lock_key(collection_id),))
                    taken = (await cur.fetchone())[0]
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._held[holder] = conn
        return True

    async def renew(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """True while the lock's connection is alive (the lock cannot be lost any other way)."""
        conn = self._held.get(holder)
        if conn is None or conn.closed:
            self._held.pop(holder, None)
            return False
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
        except _GONE:
            self._held.pop(holder, None)
            conn.close()
            return False
        return True

    async def release(self, collection_id: str, holder: str) -> None:
        conn = self._held.pop(holder, None)
        if conn is None:
            return
        try:
            if not conn.closed:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT pg_advisory_unlock(%s)", (upload_lock_key(collection_id),))
        except _GONE:
            pass  # the connection is gone, and the lock with it
        finally:
            conn.close()

    def close(self) -> None:
        """Close every lock's connection (the database is closing): the locks go with them."""
        for holder in list(self._held):
            self._held.pop(holder).close()


class _PostgresTransaction:
    def __init__(self, cur):
        self._cur = cur

    async def execute(self, sql, params=()):
        await self._cur.execute(sql, params)
        return self._cur.rowcount

    async def fetchone(self, sql, params=()):
        await self._cur.execute(sql, params)
        return await self._cur.fetchone()

    async def fetchall(self, sql, params=()):
        await self._cur.execute(sql, params)
        return await self._cur.fetchall()
