"""The services in process, on real parts: SQLite in a temporary directory, the local store, the filesystem
configuration, argon2 and JWTs — no server, no HTTP, no mocks. A failure here names a service, not "the server"."""

import asyncio
import contextlib
import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from backup_repository.config.filesystem import FilesystemProvider
from backup_repository.db.sqlite import SqliteDatabase
from backup_repository.domain.access import parse_scope
from backup_repository.domain.errors import (
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, Unauthenticated,
)
from backup_repository.domain.events import Events
from backup_repository.domain.times import utcnow
from backup_repository.failures import StorageError
from backup_repository.security.passwords import PasswordVerifier
from backup_repository.security.tokens import TokenService
from backup_repository.services.auth import AuthService
from backup_repository.services.collections import CollectionService
from backup_repository.services.janitor import Janitor
from backup_repository.services.uploads import UploadLimits, UploadRequest, UploadService
from backup_repository.storage.blobstore import BlobStore
from tests.integration.collections_config import PASSWORD, acl, collection, write_collections_config
from tests.support import COLLECTIONS, JWT_SECRET, ConfigDir, pgp_message


class Recorder(Events):
    """The events services report, kept in order."""

    def __init__(self):
        self.uploads = []

    def upload_finished(self, outcome: str, collection_id: str = None, seconds: float = 0.0, size: int = 0):
        self.uploads.append((outcome, collection_id, size))


@contextlib.asynccontextmanager
async def services(tmp_path: Path, extra_collections: dict = None, limits: UploadLimits = UploadLimits()):
    """The services of one server, wired as context.py wires them, on stores under ``tmp_path``;
    ``extra_collections``: {name: document} besides those of write_collections_config."""
    config = ConfigDir(tmp_path / "config")
    write_collections_config(config)
    for name, document in (extra_collections or {}).items():
        config.write(COLLECTIONS, name, document)
    provider = FilesystemProvider(str(config.root), "backup-repository")
    provider.load()
    db = SqliteDatabase(str(tmp_path / "metadata.sqlite3"))
    (tmp_path / "store").mkdir()
    storage = BlobStore.from_url(f"file://{tmp_path / 'store'}")
    await db.open()
    await storage.open()
    verifier = PasswordVerifier()
    events = Recorder()
    try:
        yield Services(
            db=db, storage=storage, root=tmp_path / "store", events=events,
            auth=AuthService(provider, db, TokenService(JWT_SECRET, 3600), verifier),
            uploads=UploadService(provider, db, storage, events=events, limits=limits),
            collections=CollectionService(provider, db, storage),
        )
    finally:
        await storage.close()
        await db.close()
        verifier.close()


class Services:
    def __init__(self, **parts):
        self.__dict__.update(parts)
        self.tokens = {}  # session id -> token

    def objects(self) -> list:
        """Every file in the store, temporary upload files included."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    async def principal(self, login: str, scope=()):
        result = await self.auth.login(login, PASSWORD, scope, "127.0.0.1")
        self.tokens[result.session.id] = result.token
        return await self.auth.authenticate(result.token, "127.0.0.1")

    async def upload(self, principal, collection_id: str, body: bytes, chunk: int = 1000):
        """Feed ``body`` as the HTTP handler does; the error the upload failed with is raised."""
        failures = []
        # no length: as when chunked
        upload = await self.uploads.begin(principal, UploadRequest(collection_id), on_failed=failures.append)
        for position in range(0, len(body), chunk):
            waiting = upload.feed(body[position:position + chunk])
            if waiting is not None:
                await waiting
        version = await upload.complete()
        if version is None:
            raise failures[0]
        return version


    async def half_upload(self, principal, collection_id: str):
        """An upload whose client sent 200 KB of a 300 KB message and then nothing."""
        upload = await self.uploads.begin(principal, UploadRequest(collection_id))
        upload.feed(pgp_message(b"z" * 300_000)[:200_000])
        return upload


def run(tmp_path, scenario, extra_collections: dict = None, limits: UploadLimits = UploadLimits()):
    async def main():
        async with services(tmp_path, extra_collections, limits) as s:
            return await scenario(s)

    return asyncio.run(main())


# --- uploads ---------------------------------------------------------------------------------------------------

def test_an_upload_that_completes(tmp_path):
    body = pgp_message(b"a backup" * 1000)

    async def scenario(s):
        version = await s.upload(await s.principal("writer"), "docs", body)
        assert (version.number, version.size, version.sha256) == (1, len(body), hashlib.sha256(body).hexdigest())
        assert [v.number for v in await s.db.versions.of_collection("docs")] == [1]
        assert s.objects() == ["docs/docs-1.gpg"]
        assert (s.root / "docs" / "docs-1.gpg").read_bytes() == body
        assert await s.db.pending_uploads.all() == []

    run(tmp_path, scenario)


def test_an_upload_refused_mid_body_leaves_nothing(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        with pytest.raises(BadRequest, match="valid GPG footer"):
            await s.upload(writer, "docs", pgp_message(b"x" * 5000) + b"trailing junk")
        with pytest.raises(PayloadTooLarge, match="filesize reached allowed limit"):
            await s.upload(writer, "docs", pgp_message(b"x" * (4 << 20)), chunk=1 << 16)  # docs: 1M + 2M extra
        assert s.objects() == [] and await s.db.versions.of_collection("docs") == []
        # the number and the lock were given back
        assert (await s.upload(writer, "docs", pgp_message(b"next"))).number == 1

    run(tmp_path, scenario)


def test_each_upload_is_counted_once_with_the_outcome_its_error_names(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        body = pgp_message(b"x" * 5000)
        await s.upload(writer, "docs", body)
        with pytest.raises(BadRequest):
            await s.upload(writer, "docs", body + b"junk")
        with pytest.raises(PayloadTooLarge):
            await s.upload(writer, "docs", pgp_message(b"x" * (4 << 20)), chunk=1 << 16)
        with pytest.raises(BadRequest, match="sent empty data"):
            await s.upload(writer, "docs", b"")
        gone = await s.half_upload(writer, "docs")
        gone.client_gone()
        gone.client_gone()  # the connection closing twice counts once
        await gone.abort()
        assert s.events.uploads == [("stored", "docs", len(body)), ("not_gpg", "docs", 0), ("quota", "docs", 0),
                                    ("bad_request", "docs", 0), ("client_gone", "docs", 0)]
        # refusals before an upload begins are counted by the service, for configured collections only
        s.uploads.refused(Forbidden("x", reason="window_closed"), "docs", authenticated=True)
        s.uploads.refused(Unauthenticated("x"), "no-such-collection", authenticated=False)
        s.uploads.refused(None, "docs", authenticated=False)
        assert s.events.uploads[-3:] == [("window_closed", "docs", 0), ("unauthenticated", None, 0),
                                         ("client_gone", None, 0)]

    run(tmp_path, scenario)


def test_a_stalled_upload_fails_at_its_idle_deadline_and_a_slow_one_at_its_total(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        failures = []
        stalled = await s.uploads.begin(writer, UploadRequest("docs"), on_failed=failures.append)
        stalled.feed(pgp_message(b"z" * 1000)[:500])
        await asyncio.sleep(0.6)  # idle 0.4 s: failed, cleaned up, told
        assert [type(f) for f in failures] == [RequestTimeout]
        assert failures[0].message == "Request took too long"
        assert s.objects() == [] and s.events.uploads[-1] == ("timeout", "docs", 0)
        assert await stalled.complete() is None  # the body's end after the failure: nothing more happens
        # a client that keeps sending, but too slowly for the total deadline (1 s)
        slow = await s.uploads.begin(writer, UploadRequest("docs"), on_failed=failures.append)
        message = pgp_message(b"y" * 1000)
        for position in range(0, 500, 50):
            slow.feed(message[position:position + 50])
            await asyncio.sleep(0.15)
        assert len(failures) == 2 and isinstance(failures[1], RequestTimeout)
        assert s.objects() == [] and await s.db.versions.of_collection("docs") == []
        # the lock and the number were given back
        assert (await s.upload(writer, "docs", pgp_message(b"next"))).number == 1

    run(tmp_path, scenario, limits=UploadLimits(total=1.0, idle=0.4))


def test_a_client_gone_after_the_whole_body_still_gets_its_version(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        upload = await s.uploads.begin(writer, UploadRequest("docs"))
        upload.feed(pgp_message(b"whole"))
        completing = asyncio.ensure_future(upload.complete())
        await asyncio.sleep(0)
        upload.client_gone()
        version = await completing
        assert version is not None and version.number == 1
        assert s.events.uploads == [("stored", "docs", version.size)]

    run(tmp_path, scenario)


def test_an_aborted_upload_leaves_nothing_and_the_next_one_waits_for_its_clean_up(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        first = await s.half_upload(writer, "docs")
        aborting = asyncio.ensure_future(first.abort())  # the client went away
        await asyncio.sleep(0)
        # a reconnecting client: it waits for the clean-up instead of getting 409
        second = await s.upload(writer, "docs", pgp_message(b"again"))
        await aborting
        assert second.number == 1
        assert s.objects() == ["docs/docs-1.gpg"]

    run(tmp_path, scenario)


def test_a_second_upload_while_one_runs_is_a_conflict(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        running = await s.uploads.begin(writer, UploadRequest("docs"))
        with pytest.raises(Conflict, match="cannot upload to same collection in parallel"):
            await s.uploads.begin(writer, UploadRequest("docs"))
        await running.abort()

    run(tmp_path, scenario)


def test_rotation_removes_the_oldest_versions(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        for index in range(5):  # docs keeps 3
            await s.upload(writer, "docs", pgp_message(b"%d" % index))
        assert [v.number for v in await s.db.versions.of_collection("docs")] == [3, 4, 5]
        assert s.objects() == ["docs/docs-3.gpg", "docs/docs-4.gpg", "docs/docs-5.gpg"]

    run(tmp_path, scenario)


# --- authentication and access decisions ---------------------------------------------------------------------

def test_logins_access_keys_and_scoped_tokens(tmp_path):
    async def scenario(s):
        with pytest.raises(Unauthenticated, match="incorrect Username or Password"):
            await s.auth.login("writer", "wrong", (), "127.0.0.1")
        with pytest.raises(Unauthenticated, match="incorrect Username or Password"):
            await s.auth.login("keyed$nokey", PASSWORD, (), "127.0.0.1")

        key = await s.principal("keyed$up")  # upload on docs only
        assert key.actor.access_key_name == "up"
        assert (await s.upload(key, "docs", pgp_message(b"k"))).number == 1
        with pytest.raises(Forbidden, match="not authorized to download"):
            await s.collections.download(key, "docs", "latest")
        with pytest.raises(Forbidden, match="may not view profiles or manage sessions"):
            await s.auth.sessions(key)

        scope = parse_scope([{"type": "collection", "name": "docs", "roles": ["backupDownloader"]}])
        scoped = await s.principal("admin", scope)
        assert (await s.collections.download(scoped, "docs", "latest")).version.number == 1
        with pytest.raises(Forbidden, match="not authorized to upload"):
            await s.uploads.begin(scoped, UploadRequest("docs"))
        with pytest.raises(Forbidden, match="not authorized to list versions"):
            await s.collections.versions(scoped, "older")
        with pytest.raises(Forbidden, match="may not view profiles or manage sessions"):
            s.auth.view_user(scoped, "admin")

        admin = await s.principal("admin")
        assert [session.id for session in await s.auth.sessions(admin, "keyed")] == [key.session.id]
        assert await s.auth.logout(admin, key.session.id) == key.session.id
        with pytest.raises(Unauthenticated, match="token was revoked"):
            await s.auth.authenticate(s.tokens[key.session.id], "127.0.0.1")

    run(tmp_path, scenario)


# --- the janitor -----------------------------------------------------------------------------------------------

def test_the_janitor_removes_a_stale_pending_upload(tmp_path):
    async def scenario(s):
        writer = await s.principal("writer")
        stale = await s.half_upload(writer, "docs")
        await asyncio.sleep(0.2)  # the writer thread has created its temporary file
        assert s.objects(), "the upload has a temporary object"
        # as if this server had crashed an hour ago: the record and the file stay, older than the upload timeout
        hour_ago = time.time() - 3600
        for path in s.root.rglob("*"):
            os.utime(path, (hour_ago, hour_ago))
        janitor = Janitor(s.db, s.storage, upload_timeout=60, clock=lambda: utcnow() + timedelta(hours=1))
        s.uploads.active.discard(stale)
        assert await janitor.run_once() >= 1
        assert await s.db.pending_uploads.all() == []
        await stale.abort()
        assert s.objects() == []

    run(tmp_path, scenario)


# --- minimumRetention ------------------------------------------------------------------------------------------

def test_the_status_of_a_collection_full_of_protected_versions_changes_when_the_floor_passes(tmp_path):
    """The status pass recomputes a status only when something changed; the end of a floor is such a change."""
    vault = collection("vault", max_count=2, extra="  minimumRetention: 2s\n" + acl(("writer", ["backupUploader"])))

    async def scenario(s):
        writer = await s.principal("writer")
        for index in range(2):
            await s.upload(writer, "vault", pgp_message(b"v%d" % index))
        known = {}
        status = (await s.collections.statuses(known))["vault"]
        assert status.healthy is False
        [(check, message)] = status.failed
        assert check == "MinimumRetentionValidator"
        assert message.startswith("collection is full of protected versions")
        assert "vault" not in await s.collections.statuses(known)  # nothing changed: not computed again
        await asyncio.sleep(2.2)
        assert (await s.collections.statuses(known))["vault"].healthy is True
        assert (await s.upload(writer, "vault", pgp_message(b"v3"))).number == 3

    run(tmp_path, scenario, {"vault": vault})


def test_a_download_whose_version_rotation_deleted_meanwhile_is_404(tmp_path):
    """The version is looked up, then rotation deletes it before its object is read: 404 like a download that came
    a moment later, not 503 (whose store would seem away); the sendfile and the streamed paths alike."""
    async def scenario(s):
        writer = await s.principal("writer")
        await s.upload(writer, "docs", pgp_message(b"first"))
        reader = await s.principal("reader")
        download = await s.collections.download(reader, "docs", "1")
        version = download.version
        assert await s.db.versions.delete(version, utcnow())
        await s.storage.delete(version.object_name)  # what rotation does, between the lookup and the read
        with pytest.raises(NotFound, match="cannot find specified version"):
            await s.collections.open_file(download, 0, version.size)
        with pytest.raises(NotFound, match="cannot find specified version"):
            async with contextlib.aclosing(s.collections.read(download, 0, version.size)) as chunks:
                async for _ in chunks:
                    pass
        # a missing object whose version still exists is the store's fault: 503 stays
        await s.upload(writer, "docs", pgp_message(b"second"))
        second = await s.collections.download(reader, "docs", "latest")
        await s.storage.delete(second.version.object_name)
        with pytest.raises(StorageError):
            await s.collections.open_file(second, 0, second.version.size)

    run(tmp_path, scenario)
