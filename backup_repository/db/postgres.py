"""The shared metadata database: PostgreSQL through an aiopg connection pool."""

import contextlib
import logging

import aiopg
import psycopg2

from backup_repository.db.repository import DatabaseError, Repository

log = logging.getLogger(__name__)

#: Key of the advisory lock that serializes schema migrations across servers sharing one database.
MIGRATION_LOCK_KEY = 7_180_420_001


class PostgresDatabase(Repository):
    name = "postgresql"

    def __init__(self, host: str, port: int, user: str, password: str, dbname: str,
                 minsize: int = 1, maxsize: int = 10, timeout: float = 30.0):
        self._params = dict(host=host, port=port, user=user, password=password or "", dbname=dbname)
        self._minsize, self._maxsize, self._timeout = minsize, maxsize, timeout
        self._pool = None

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

    async def close(self):
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def execute(self, sql, params=()):
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return cur.rowcount

    async def fetchone(self, sql, params=()):
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchone()

    async def fetchall(self, sql, params=()):
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    @contextlib.asynccontextmanager
    async def transaction(self):
        # aiopg connections are in autocommit mode; a transaction is an explicit BEGIN ... COMMIT on one of them.
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("BEGIN")
            try:
                yield _PostgresTransaction(cur)
            except BaseException:
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
