"""The repository interface shared by both backends.

A backend provides four primitives — ``execute``, ``fetchone``, ``fetchall`` and ``transaction()`` — with SQL
written in the ``%s`` parameter style; everything else (queries, migrations) is written once, here.
"""

import abc
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from backup_repository.db.schema import LATEST, MIGRATIONS
from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.times import utcnow
from backup_repository.domain.versions import Version, VersionInfo
from backup_repository.failures import DatabaseError, LeaseLost

log = logging.getLogger(__name__)

_SESSION_COLUMNS = (
    "id, expires_at, deactivated, description, requester_ip, user_name, access_key_name, "
    "created_at, updated_at, deleted_at, credential"
)


#: Tables that this server creates, and the Go server's metadata table: found in a database this server never
#: initialised, they belong to someone else and must not be mixed with ours.
FOREIGN_TABLES = frozenset({"granted_accesses", "versions", "version_counters", "upload_locks", "uploaded_versions"})


class Repository(abc.ABC):
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

    @abc.abstractmethod
    async def _table_names(self, tx) -> set:
        """Names of the tables in the database (the current schema for PostgreSQL)."""

    # --- schema ---------------------------------------------------------------------------------
    async def migrate(self):
        """Bring the schema to the latest version; idempotent, and safe when several servers start at once."""
        try:
            await self._migrate()
        except DatabaseError:
            raise
        except Exception as exc:  # the driver's own errors: say what failed, never a traceback
            reason = " ".join(str(exc).split())
            raise DatabaseError(f"cannot bring the {self.describe()} schema up to date: {reason}") from exc

    async def _migrate(self):
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

    async def ping(self):
        await self.fetchone("SELECT 1")

    # --- granted accesses -----------------------------------------------------------------------
    async def create_session(self, session: GrantedAccess):
        await self.execute(
            f"INSERT INTO granted_accesses ({_SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                session.id, session.expires_at, session.deactivated, session.description, session.requester_ip,
                session.user, session.access_key_name, session.created_at, session.updated_at, session.deleted_at,
                session.credential,
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

    async def bind_session_credential(self, session_id: str, credential: str):
        """Bind a session opened before sessions recorded their credential (it has none yet) to ``credential``."""
        await self.execute("UPDATE granted_accesses SET credential = %s WHERE id = %s AND credential = ''",
                           (credential, session_id))

    async def revoke_sessions(self, user_name: str, now: datetime, access_key_name: str = None,
                              except_credential: str = None) -> int:
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
        return await self.execute(sql, tuple(params))

    async def list_sessions(self, user_name: str, limit: int = 100) -> list:
        rows = await self.fetchall(
            f"SELECT {_SESSION_COLUMNS} FROM granted_accesses WHERE user_name = %s "
            "ORDER BY created_at DESC, id LIMIT %s",
            (user_name, limit),
        )
        return [_session(row) for row in rows]

    # --- versions -------------------------------------------------------------------------------
    async def reserve_version_number(self, collection_id: str) -> int:
        """The next version number of a collection: the highest ever given + 1, never reused."""
        row = await self.fetchone(
            "INSERT INTO version_counters (collection_id, last_number) "
            "VALUES (%s, COALESCE((SELECT MAX(version_number) FROM versions WHERE collection_id = %s), 0) + 1) "
            "ON CONFLICT (collection_id) DO UPDATE SET last_number = version_counters.last_number + 1 "
            "RETURNING last_number",
            (collection_id, collection_id),
        )
        return row[0]

    async def release_version_number(self, collection_id: str, number: int) -> bool:
        """Give back a number reserved by an upload that failed, unless a later one was reserved since."""
        count = await self.execute(
            "UPDATE version_counters SET last_number = last_number - 1 WHERE collection_id = %s AND last_number = %s",
            (collection_id, number),
        )
        return count > 0

    async def insert_version(self, version: Version, pending_object: str = None, holder: str = None):
        """Register a stored version. With ``pending_object``, its pending-upload row goes in the same transaction,
        and only while the upload ``holder`` still owns it: when the janitor has taken the row over (the upload's
        lease ran out), nothing is registered and LeaseLost is raised (docs/scaling.md#what-is-guaranteed)."""
        async with self.transaction() as tx:
            if pending_object is not None:
                owned = await tx.execute("DELETE FROM pending_uploads WHERE object_name = %s AND holder = %s",
                                         (pending_object, holder or ""))
                if owned != 1:
                    raise LeaseLost(pending_object)
            await tx.execute(
                f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version.id, version.collection_id, version.number, version.filename, version.size,
                    version.sha256, version.uploaded_by_session_id, version.user, version.created_at,
                    version.updated_at, version.deleted_at,
                ),
            )

    async def all_versions(self) -> list:
        rows = await self.fetchall(f"SELECT {_VERSION_COLUMNS} FROM versions ORDER BY collection_id, version_number")
        return [_version(row) for row in rows]

    async def list_versions(self, collection_id: str) -> list:
        rows = await self.fetchall(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE collection_id = %s ORDER BY version_number",
            (collection_id,),
        )
        return [_version(row) for row in rows]

    async def get_version(self, collection_id: str, number: int) -> Optional[Version]:
        row = await self.fetchone(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE collection_id = %s AND version_number = %s",
            (collection_id, number),
        )
        return _version(row) if row else None

    async def latest_version(self, collection_id: str) -> Optional[Version]:
        row = await self.fetchone(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE collection_id = %s "
            "ORDER BY version_number DESC LIMIT 1",
            (collection_id,),
        )
        return _version(row) if row else None

    async def collection_stats(self, collection_ids=None) -> dict:
        """{collection id: (versions count, used bytes, latest version time)} for every collection with versions,
        or for those of ``collection_ids`` (a few: a tenant's)."""
        select = "SELECT collection_id, COUNT(*), COALESCE(SUM(filesize), 0), MAX(created_at) FROM versions "
        if collection_ids is None:
            rows = await self.fetchall(select + "GROUP BY collection_id")
        elif not collection_ids:
            rows = []
        else:
            marks = ", ".join(["%s"] * len(collection_ids))
            rows = await self.fetchall(select + f"WHERE collection_id IN ({marks}) GROUP BY collection_id",
                                       tuple(collection_ids))
        return {row[0]: (int(row[1]), int(row[2]), _timestamp(row[3])) for row in rows}

    async def collection_summaries(self) -> dict:
        """{collection id: (versions count, used bytes, latest version time, largest version)} of every collection
        with versions, in one query (the collection metrics, services/monitoring.py)."""
        rows = await self.fetchall(
            "SELECT collection_id, COUNT(*), COALESCE(SUM(filesize), 0), MAX(created_at), COALESCE(MAX(filesize), 0) "
            "FROM versions GROUP BY collection_id"
        )
        return {row[0]: (int(row[1]), int(row[2]), _timestamp(row[3]), int(row[4])) for row in rows}

    async def version_infos(self, collection_ids) -> dict:
        """{collection id: [VersionInfo, ...]} of the given collections (those with a minimumRetention, for the
        collection metrics), a query per 500 collections."""
        found = {}
        collection_ids = list(collection_ids)
        for start in range(0, len(collection_ids), 500):
            part = collection_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(part))
            rows = await self.fetchall(
                f"SELECT collection_id, id, version_number, filesize, created_at FROM versions "
                f"WHERE collection_id IN ({marks})", tuple(part))
            for row in rows:
                found.setdefault(row[0], []).append(
                    VersionInfo(row[1], int(row[2]), int(row[3]), _timestamp(row[4])))
        return found

    async def delete_version(self, version: Version, now: datetime) -> bool:
        """Delete a version's row and record the deletion of its object, in one transaction: from then on the
        object is owned by the ``pending_deletions`` row until the store confirms it is gone."""
        async with self.transaction() as tx:
            await tx.execute("DELETE FROM integrity_checks WHERE version_id = %s", (version.id,))
            if await tx.execute("DELETE FROM versions WHERE id = %s", (version.id,)) == 0:
                return False
            await tx.execute(
                "INSERT INTO pending_deletions (object_name, collection_id, version_number, recorded_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (object_name) DO NOTHING",
                (version.object_name, version.collection_id, version.number, now),
            )
        return True

    # --- recorded deletions -----------------------------------------------------------------------
    async def deletion_done(self, object_name: str):
        await self.execute("DELETE FROM pending_deletions WHERE object_name = %s", (object_name,))

    async def deletion_failed(self, object_name: str, error: str):
        await self.execute(
            "UPDATE pending_deletions SET attempts = attempts + 1, last_error = %s WHERE object_name = %s",
            (error[:1000], object_name),
        )

    async def pending_deletions(self, recorded_before: datetime, limit: int = 1000) -> list:
        """PendingDeletion rows recorded before ``recorded_before``, oldest first."""
        rows = await self.fetchall(
            "SELECT object_name, collection_id, version_number, recorded_at, attempts, last_error "
            "FROM pending_deletions WHERE recorded_at < %s ORDER BY recorded_at LIMIT %s",
            (recorded_before, limit),
        )
        return [PendingDeletion(row[0], row[1], int(row[2]), _timestamp(row[3]), int(row[4]), row[5])
                for row in rows]

    async def refused_deletions(self, collection_id: str = None) -> dict:
        """{collection id: [PendingDeletion, ...]} of the deletions the store has refused (or failed) at least once
        (collection health, metrics)."""
        sql = ("SELECT object_name, collection_id, version_number, recorded_at, attempts, last_error "
               "FROM pending_deletions WHERE attempts > 0")
        params = ()
        if collection_id is not None:
            sql += " AND collection_id = %s"
            params = (collection_id,)
        found = {}
        for row in await self.fetchall(sql + " ORDER BY collection_id, version_number", params):
            found.setdefault(row[1], []).append(
                PendingDeletion(row[0], row[1], int(row[2]), _timestamp(row[3]), int(row[4]), row[5]))
        return found

    # --- pending uploads (crash recovery) -------------------------------------------------------
    async def add_pending_upload(self, object_name: str, collection_id: str, now: datetime, holder: str,
                                 ttl: float) -> bool:
        """Record an upload to ``object_name`` owned by ``holder``, its lease running ``ttl`` seconds; False when
        the name is recorded already (an earlier upload's leftover that the janitor has not removed yet)."""
        return await self.execute(
            "INSERT INTO pending_uploads (object_name, collection_id, started_at, holder, expires_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (object_name) DO NOTHING",
            (object_name, collection_id, now, holder, now + timedelta(seconds=ttl)),
        ) > 0

    async def renew_pending_upload(self, object_name: str, holder: str, now: datetime, ttl: float) -> bool:
        """Extend the upload's lease; False when the row is no longer the holder's (the janitor took it over)."""
        return await self.execute(
            "UPDATE pending_uploads SET expires_at = %s WHERE object_name = %s AND holder = %s",
            (now + timedelta(seconds=ttl), object_name, holder),
        ) > 0

    async def remove_pending_upload(self, object_name: str, holder: str):
        await self.execute("DELETE FROM pending_uploads WHERE object_name = %s AND holder = %s",
                           (object_name, holder))

    async def pending_uploads(self) -> list:
        """(object name, collection id, holder) of every recorded upload."""
        rows = await self.fetchall("SELECT object_name, collection_id, holder FROM pending_uploads ORDER BY started_at")
        return [(row[0], row[1], row[2]) for row in rows]

    async def claim_abandoned_uploads(self, claimant: str, expired_before: datetime,
                                      legacy_started_before: datetime) -> list:
        """Take over the pending uploads whose lease ran out before ``expired_before`` (rows written by earlier
        servers, without a lease: started before ``legacy_started_before``), and those ``claimant`` took over
        before; returns their (object name, collection id). A claimed row can no longer be committed."""
        await self.execute(
            "UPDATE pending_uploads SET holder = %s WHERE holder <> %s AND "
            "((holder <> '' AND expires_at < %s) OR (holder = '' AND started_at < %s))",
            (claimant, claimant, expired_before, legacy_started_before),
        )
        rows = await self.fetchall(
            "SELECT object_name, collection_id FROM pending_uploads WHERE holder = %s ORDER BY started_at",
            (claimant,),
        )
        return [(row[0], row[1]) for row in rows]

    async def accounted_names(self) -> set:
        """Every object name the database accounts for: versions, pending uploads, recorded deletions."""
        names = set()
        for version in await self.all_versions():
            names.add(version.object_name)
        for table in ("pending_uploads", "pending_deletions"):
            names.update(row[0] for row in await self.fetchall(f"SELECT object_name FROM {table}"))
        return names

    async def created_at(self) -> Optional[datetime]:
        """When this database was first set up (its first migration)."""
        row = await self.fetchone("SELECT MIN(applied_at) FROM schema_migrations")
        return _timestamp(row[0]) if row else None

    # --- integrity ------------------------------------------------------------------------------
    async def record_integrity(self, version: Version, ok: bool, message: str, now: datetime):
        await self.execute(
            "INSERT INTO integrity_checks (version_id, collection_id, checked_at, ok, message) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version_id) DO UPDATE SET checked_at = excluded.checked_at, "
            "ok = excluded.ok, message = excluded.message",
            (version.id, version.collection_id, now, ok, message),
        )

    async def collections_with_integrity_problems(self) -> dict:
        """{collection id: ((version number, filename, message), ...)} of the collections with failed checks."""
        rows = await self.fetchall(
            "SELECT i.collection_id, v.version_number, v.filename, i.message FROM integrity_checks i "
            "JOIN versions v ON v.id = i.version_id WHERE i.ok = %s ORDER BY i.collection_id, v.version_number",
            (False,),
        )
        result = {}
        for row in rows:
            result.setdefault(row[0], []).append((row[1], row[2], row[3]))
        return {collection_id: tuple(problems) for collection_id, problems in result.items()}

    async def last_verifications(self) -> dict:
        """{collection id: when a version of it was last verified} for every collection ever verified."""
        rows = await self.fetchall("SELECT collection_id, MAX(checked_at) FROM integrity_checks GROUP BY collection_id")
        return {row[0]: _timestamp(row[1]) for row in rows}

    async def integrity_problems(self, collection_id: str) -> list:
        """(version number, filename, message) of the failed checks of the collection's current versions."""
        rows = await self.fetchall(
            "SELECT v.version_number, v.filename, i.message FROM integrity_checks i "
            "JOIN versions v ON v.id = i.version_id "
            "WHERE i.collection_id = %s AND i.ok = %s ORDER BY v.version_number",
            (collection_id, False),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    # --- upload locks ---------------------------------------------------------------------------
    async def acquire_upload_lock(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        """Take the collection's upload lease unless another holder has a live one."""
        count = await self.execute(
            "INSERT INTO upload_locks (collection_id, holder, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (collection_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE upload_locks.expires_at < %s OR upload_locks.holder = excluded.holder",
            (collection_id, holder, now + timedelta(seconds=ttl), now),
        )
        return count > 0

    async def renew_upload_lock(self, collection_id: str, holder: str, now: datetime, ttl: float) -> bool:
        count = await self.execute(
            "UPDATE upload_locks SET expires_at = %s WHERE collection_id = %s AND holder = %s",
            (now + timedelta(seconds=ttl), collection_id, holder),
        )
        return count > 0

    async def release_upload_lock(self, collection_id: str, holder: str):
        await self.execute("DELETE FROM upload_locks WHERE collection_id = %s AND holder = %s",
                           (collection_id, holder))


_VERSION_COLUMNS = (
    "id, collection_id, version_number, filename, filesize, sha256, uploaded_by_session_id, user_name, "
    "created_at, updated_at, deleted_at"
)


@dataclass(frozen=True)
class PendingDeletion:
    object_name: str
    collection_id: str
    version_number: int
    recorded_at: datetime
    attempts: int
    last_error: str


def _timestamp(value) -> Optional[datetime]:
    """Aggregates lose SQLite's column type, so MAX() of a timestamp comes back as its text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def _version(row) -> Version:
    return Version(
        id=row[0], collection_id=row[1], number=row[2], filename=row[3], size=row[4], sha256=row[5],
        uploaded_by_session_id=row[6], user=row[7], created_at=row[8], updated_at=row[9], deleted_at=row[10],
    )


def _session(row) -> GrantedAccess:
    return GrantedAccess(
        id=row[0], expires_at=row[1], deactivated=bool(row[2]), description=row[3], requester_ip=row[4],
        user=row[5], access_key_name=row[6], created_at=row[7], updated_at=row[8], deleted_at=row[9],
        credential=row[10],
    )
