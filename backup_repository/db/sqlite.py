"""The embedded metadata database: SQLite through the standard library.

One connection, used from one dedicated thread, so sqlite3 never runs on the event loop; an asyncio lock keeps
transactions whole. WAL mode lets readers of other processes (``--verify``) see a consistent database.
"""

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Optional

from backup_repository.db.locks import UploadLocks
from backup_repository.db.repository import Repository
from backup_repository.failures import DatabaseError


def _adapt_datetime(value: datetime) -> str:
    # One fixed-width UTC format, so that text order is time order.
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _convert_timestamp(raw: bytes) -> datetime:
    value = datetime.fromisoformat(raw.decode())
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _convert_boolean(raw: bytes) -> bool:
    return raw not in (b"0", b"", b"FALSE", b"false")


def _register_column_types():
    """Let rows come back as the values PostgreSQL returns. sqlite3 keeps converters in a process-wide table keyed
    by the declared type, so this runs when a database is opened (idempotent), never as a side effect of import."""
    sqlite3.register_converter("TIMESTAMPTZ", _convert_timestamp)
    sqlite3.register_converter("BOOLEAN", _convert_boolean)


def _params(params) -> tuple:
    """Datetimes are stored as fixed-width UTC text (adapted here, not by a process-wide adapter)."""
    return tuple(_adapt_datetime(value) if isinstance(value, datetime) else value for value in params)


class SqliteDatabase(Repository):
    def __init__(self, path: str):
        super().__init__(upload_locks=UploadLocks(self))
        self.path = os.path.expanduser(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._lock = asyncio.Lock()
        self._conn: Optional[sqlite3.Connection] = None

    def describe(self) -> str:
        return f"SQLite at {self.path}"

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self):
        _register_column_types()
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        conn = sqlite3.connect(
            self.path, detect_types=sqlite3.PARSE_DECLTYPES, isolation_level=None, check_same_thread=False,
            timeout=30,
        )
        # Switching to WAL takes an exclusive lock and SQLite does not wait for it (the busy timeout does not
        # apply): when two processes open a new database at once, one of them must retry.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    conn.close()
                    raise
                time.sleep(0.1)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def open(self):
        try:
            self._conn = await self._run(self._connect)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open the SQLite database {self.path}: {exc}; check --db-path") from exc
        await self.migrate()

    async def close(self):
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    # Statements run in the dedicated thread; %s placeholders become sqlite's ?.
    def _cursor(self, sql: str, params) -> sqlite3.Cursor:
        if self._conn is None:
            raise DatabaseError(f"the SQLite database {self.path} is not open")
        return self._conn.execute(sql.replace("%s", "?"), _params(params))

    def _execute_sync(self, sql, params) -> int:
        return self._cursor(sql, params).rowcount

    def _fetchone_sync(self, sql, params):
        return self._cursor(sql, params).fetchone()

    def _fetchall_sync(self, sql, params) -> list:
        return self._cursor(sql, params).fetchall()

    async def execute(self, sql, params=()) -> int:
        async with self._lock:
            return await self._run(self._execute_sync, sql, params)

    async def fetchone(self, sql, params=()):
        async with self._lock:
            return await self._run(self._fetchone_sync, sql, params)

    async def fetchall(self, sql, params=()) -> list:
        async with self._lock:
            return await self._run(self._fetchall_sync, sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator["_SqliteTransaction"]:
        async with self._lock:
            await self._run(self._execute_sync, "BEGIN IMMEDIATE", ())
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await self._run(self._execute_sync, "ROLLBACK", ())
                raise
            await self._run(self._execute_sync, "COMMIT", ())

    async def _table_names(self, tx) -> set:
        rows = await tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


class _SqliteTransaction:
    def __init__(self, db: SqliteDatabase):
        self._db = db

    async def execute(self, sql, params=()) -> int:
        return await self._db._run(self._db._execute_sync, sql, params)

    async def fetchone(self, sql, params=()):
        return await self._db._run(self._db._fetchone_sync, sql, params)

    async def fetchall(self, sql, params=()) -> list:
        return await self._db._run(self._db._fetchall_sync, sql, params)
