"""The repository interface behaves identically on SQLite and PostgreSQL (real databases, no server)."""

import asyncio
from datetime import timedelta

import pytest

from backup_repository.db.schema import LATEST
from backup_repository.db.sqlite import SqliteDatabase
from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.times import utcnow
from backup_repository.domain.versions import Version
from backup_repository.failures import DatabaseError, LeaseLost
from tests import support


@pytest.fixture(params=["sqlite", "postgres"])
def make_db(request, tmp_path):
    """make_db() -> an unopened database; every call on one test returns a handle on the same database."""
    if request.param == "sqlite":
        path = tmp_path / "m.sqlite3"
        yield lambda: SqliteDatabase(str(path))
        return
    from backup_repository.db.postgres import PostgresDatabase

    dsn = request.getfixturevalue("pg_dsn")
    params = support.create_pg_database(dsn)
    yield lambda: PostgresDatabase(params["host"], params["port"], params["user"], params["password"],
                                   params["dbname"])
    support.drop_pg_database(dsn, params["dbname"])


def session(sid, user="alice", minutes=0, expires_in=timedelta(hours=1)):
    created = utcnow() + timedelta(minutes=minutes)
    return GrantedAccess(id=sid, expires_at=created + expires_in, deactivated=False, description="Login",
                         requester_ip="127.0.0.1", user=user, access_key_name="", created_at=created,
                         updated_at=created)


def test_migrations_are_idempotent_and_concurrent_safe(make_db):
    async def scenario():
        first, second = make_db(), make_db()
        await asyncio.gather(first.open(), second.open())  # two servers starting at once
        assert await first.schema_version() == LATEST
        await first.migrate()
        await first.migrate()
        assert await second.schema_version() == LATEST
        await first.close()
        await second.close()
        third = make_db()
        await third.open()  # a restart on an existing database
        assert await third.schema_version() == LATEST
        await third.close()

    asyncio.run(scenario())


def test_a_newer_schema_is_refused(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        await db.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                         (LATEST + 1, "from the future", utcnow()))
        await db.close()
        newer = make_db()
        with pytest.raises(DatabaseError, match="newer than this server knows"):
            await newer.open()
        await newer.close()

    asyncio.run(scenario())


def test_an_older_database_is_upgraded(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        await db.sessions.create(session("kept"))
        # turn it into a database of release 1 (sessions only): forget and undo migration 2
        await db.execute("DELETE FROM schema_migrations WHERE version = %s", (2,))
        for table in ("versions", "version_counters", "upload_locks"):
            await db.execute(f"DROP TABLE {table}")
        await db.close()
        upgraded = make_db()
        await upgraded.open()
        assert await upgraded.schema_version() == LATEST
        assert (await upgraded.sessions.get("kept")).user == "alice"  # data survives the upgrade
        assert await upgraded.versions.reserve_number("c") == 1
        await upgraded.close()

    asyncio.run(scenario())


def test_sessions_round_trip(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        original = session("abc")
        await db.sessions.create(original)
        loaded = await db.sessions.get("abc")
        assert loaded == original
        assert loaded.created_at.tzinfo is not None and loaded.is_valid(utcnow())
        assert await db.sessions.get("missing") is None

        assert await db.sessions.deactivate("abc", utcnow()) is True
        assert (await db.sessions.get("abc")).deactivated is True
        assert not (await db.sessions.get("abc")).is_valid(utcnow())
        assert await db.sessions.deactivate("missing", utcnow()) is False

        for index in range(5):
            await db.sessions.create(session(f"b{index}", user="bob", minutes=index))
        listed = await db.sessions.of_user("bob", limit=3)
        assert [s.id for s in listed] == ["b4", "b3", "b2"]
        assert await db.sessions.of_user("nobody") == []
        await db.close()

    asyncio.run(scenario())


def test_a_failed_transaction_leaves_nothing(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO granted_accesses (id, expires_at, user_name, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s)", ("tx1", utcnow(), "alice", utcnow(), utcnow()))
                raise RuntimeError("boom")
        assert await db.sessions.get("tx1") is None
        await db.close()

    asyncio.run(scenario())


def version(collection_id, number, size=10):
    now = utcnow()
    return Version(id=f"{collection_id}-{number}", collection_id=collection_id, number=number,
                   filename=f"b-{number}.gpg", size=size, sha256="ab" * 32, uploaded_by_session_id="s",
                   user="alice", created_at=now, updated_at=now)


def test_version_numbers_are_never_reused(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        assert [await db.versions.reserve_number("c") for _ in range(3)] == [1, 2, 3]
        assert await db.versions.reserve_number("other") == 1
        for number in (1, 2, 3):
            await db.versions.insert(version("c", number, size=number))
        assert [v.number for v in await db.versions.of_collection("c")] == [1, 2, 3]
        assert (await db.versions.latest("c")).number == 3
        assert (await db.versions.get("c", 2)).size == 2 and await db.versions.get("c", 9) is None
        for v in await db.versions.of_collection("c"):
            assert await db.versions.delete(v, utcnow())
        assert await db.versions.of_collection("c") == [] and await db.versions.latest("c") is None
        assert await db.versions.reserve_number("c") == 4  # rotation deleted everything: still 4
        await db.close()

    asyncio.run(scenario())


def test_an_upload_registers_its_version_only_while_it_owns_its_pending_record(make_db):
    """The fencing between a committing upload and the janitor (docs/scaling.md#what-is-guaranteed): a record the
    janitor took over (its lease ran out) can no longer be committed; a renewed lease keeps the janitor away."""
    async def scenario():
        db = make_db()
        await db.open()
        now = utcnow()
        assert await db.pending_uploads.add("c/b-1.gpg", "c", now, "upload-a", ttl=10)
        assert not await db.pending_uploads.add("c/b-1.gpg", "c", now, "upload-b", ttl=10)  # the name is taken
        assert await db.pending_uploads.add("c/b-2.gpg", "c", now, "upload-b", ttl=10)
        # upload-b renews its lease; upload-a's runs out
        assert await db.pending_uploads.renew("c/b-2.gpg", "upload-b", now + timedelta(seconds=8), ttl=10)
        claimed = await db.pending_uploads.claim_abandoned("janitor", expired_before=now + timedelta(seconds=12),
                                                   legacy_started_before=now - timedelta(hours=1))
        assert claimed == [("c/b-1.gpg", "c")]
        assert not await db.pending_uploads.renew("c/b-1.gpg", "upload-a", now, ttl=10)
        with pytest.raises(LeaseLost):
            await db.versions.insert(version("c", 1), pending_object="c/b-1.gpg", holder="upload-a")
        assert await db.versions.of_collection("c") == []
        await db.versions.insert(version("c", 2), pending_object="c/b-2.gpg", holder="upload-b")
        assert [v.number for v in await db.versions.of_collection("c")] == [2]
        # a claimed record is the claimant's until it drops it; a committed one is gone
        assert await db.pending_uploads.claim_abandoned("janitor", expired_before=now + timedelta(hours=1),
                                                legacy_started_before=now) == [("c/b-1.gpg", "c")]
        await db.pending_uploads.remove("c/b-1.gpg", "janitor")
        assert await db.pending_uploads.all() == []
        await db.close()

    asyncio.run(scenario())


def test_a_deleted_version_leaves_a_recorded_deletion_until_the_store_confirms(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        now = utcnow()
        for number in (1, 2):
            await db.versions.insert(version("c", number))
        first, second = await db.versions.of_collection("c")
        assert await db.versions.delete(first, now)
        assert not await db.versions.delete(first, now)  # deleted already (another server's rotation)
        assert await db.versions.of_collection("c") == [second]
        [recorded] = await db.deletions.recorded_before(now + timedelta(seconds=1))
        assert (recorded.object_name, recorded.collection_id, recorded.version_number, recorded.attempts) == (
            "c/b-1.gpg", "c", 1, 0)
        assert await db.deletions.recorded_before(now - timedelta(seconds=1)) == []  # recorded_before
        assert await db.deletions.refused() == {}
        assert await db.accounted_names() == {"c/b-1.gpg", "c/b-2.gpg"}
        await db.deletions.failed("c/b-1.gpg", "AccessDenied")
        await db.deletions.failed("c/b-1.gpg", "InvalidRequest: object is WORM protected")
        [refused] = (await db.deletions.refused("c"))["c"]
        assert (refused.attempts, refused.last_error) == (2, "InvalidRequest: object is WORM protected")
        await db.deletions.done("c/b-1.gpg")
        assert await db.deletions.recorded_before(now + timedelta(hours=1)) == [] and await db.deletions.refused() == {}
        assert await db.accounted_names() == {"c/b-2.gpg"}
        await db.close()

    asyncio.run(scenario())


def test_duplicate_version_numbers_are_refused_by_the_database(make_db):
    async def scenario():
        db = make_db()
        await db.open()
        await db.versions.insert(version("c", 1))
        with pytest.raises(Exception):
            await db.versions.insert(Version(**{**version("c", 1).__dict__, "id": "other-id"}))
        assert len(await db.versions.of_collection("c")) == 1
        await db.close()

    asyncio.run(scenario())


def test_upload_lock_is_exclusive_and_released_when_its_holder_dies(make_db):
    """SQLite: a lease that the holder renews and that runs out after a crash. PostgreSQL: an advisory lock on a
    dedicated connection, gone as soon as that connection is."""
    if not isinstance(make_db(), SqliteDatabase):
        return _advisory_lock_scenario(make_db)

    async def scenario():
        db = make_db()
        await db.open()
        now = utcnow()
        assert await db.upload_locks.acquire("c", "server-a", now, ttl=45)
        assert not await db.upload_locks.acquire("c", "server-b", now, ttl=45)
        assert await db.upload_locks.acquire("other", "server-b", now, ttl=45)
        assert await db.upload_locks.renew("c", "server-a", now + timedelta(seconds=30), ttl=45)
        assert not await db.upload_locks.renew("c", "server-b", now, ttl=45)
        # the holder crashed: once its lease runs out, another server takes the lock
        assert not await db.upload_locks.acquire("c", "server-b", now + timedelta(seconds=60), ttl=45)
        assert await db.upload_locks.acquire("c", "server-b", now + timedelta(seconds=76), ttl=45)
        assert not await db.upload_locks.renew("c", "server-a", now + timedelta(seconds=77), ttl=45)
        await db.upload_locks.release("c", "server-a")  # not the holder: nothing happens
        assert not await db.upload_locks.acquire("c", "server-a", now + timedelta(seconds=78), ttl=45)
        await db.upload_locks.release("c", "server-b")
        assert await db.upload_locks.acquire("c", "server-a", now + timedelta(seconds=79), ttl=45)
        await db.close()

    asyncio.run(scenario())


def _advisory_lock_scenario(make_db):
    async def scenario():
        first, second = make_db(), make_db()  # two servers
        await first.open()
        await second.open()
        now = utcnow()
        assert await first.upload_locks.acquire("c", "a", now, ttl=45)
        assert not await second.upload_locks.acquire("c", "b", now, ttl=45)
        assert await second.upload_locks.acquire("other", "b", now, ttl=45)
        assert await first.upload_locks.renew("c", "a", now, ttl=45)
        await first.upload_locks.release("c", "a")
        assert await second.upload_locks.acquire("c", "b2", now, ttl=45)
        # the holder's connection dies (a crashed server): the lock is free at once
        second.upload_locks._held["b2"].close()
        assert not await second.upload_locks.renew("c", "b2", now, ttl=45)
        assert await first.upload_locks.acquire("c", "a2", now, ttl=45)
        await first.close()
        await second.close()

    asyncio.run(scenario())
