"""Backup windows, collection health, the collection list, byte ranges, timeouts and crashes (docs/api.md#collections).

These rules do not depend on the backend, so they run on SQLite with local storage, except where the database
matters (the upload lock after a crash), which runs on both databases."""

import hashlib
import os
import signal
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.collections_config import PASSWORD, collection, stalled_upload, write_collections_config
from tests.integration.collections_config import version_path as path
from tests.support import COLLECTIONS, RawUpload, pgp_message, wait_until

WINDOW_CLOSED = ("backup window does not allow you to send a backup at this time. "
                 "You need a token that has a special permission 'uploadsAnytime'")



@pytest.fixture
def config(config):
    """The users and collections of collections_config.py (conftest's ``api`` starts the server on them)."""
    write_collections_config(config)
    return config


def health_path(collection):
    return f"/api/stable/repository/collection/{collection}/health"


@pytest.fixture
def backend(make_backend):
    """These rules do not depend on the backend (the API tests run them on all four): SQLite and local storage."""
    return make_backend("sqlite", "local")


@pytest.fixture
def local(backend):
    return backend


def test_backup_windows_and_uploads_anytime(api):
    writer = api.login("writer", PASSWORD)
    refused = api.request("POST", path("closed"), writer, data=pgp_message(b"x"))
    assert refused.status_code == 403
    assert refused.json() == {"status": False, "error": WINDOW_CLOSED, "data": {}}
    assert api.request("POST", path("open"), writer, data=pgp_message(b"x")).status_code == 200
    anytime = api.login("anytime", PASSWORD)
    assert api.request("POST", path("closed"), anytime, data=pgp_message(b"x")).status_code == 200
    # collectionManager inherits uploadsAnytime; systemAdmin inherits collectionManager
    admin = api.login("admin", PASSWORD)
    assert api.request("POST", path("closed"), admin, data=pgp_message(b"x")).status_code == 200
    # the window is checked before anything else is reserved: nothing was stored for the refused upload
    assert sorted(api.backend.objects()) == ["closed/closed-1.gpg", "closed/closed-2.gpg", "open/open-1.gpg"]


def test_collection_health(api, config):
    admin = api.login("admin", PASSWORD)
    # iwa-ait (the example) has a healthSecretRef: sha256 of "changeme-health-code"
    refused = api.get(health_path("iwa-ait"), params={"code": "wrong"})
    assert refused.status_code == 403
    assert refused.json() == {"status": False, "data": {},
                              "error": "not authorized - invalid value of 'code' parameter in query string"}
    assert api.get(health_path("iwa-ait")).status_code == 403
    assert api.get(health_path("nope")).json()["error"] == "cannot find specified collection"

    # no windows and nothing too big: healthy, no code needed for a collection without healthSecretRef
    healthy = api.get(health_path("docs"))
    assert healthy.status_code == 200
    assert healthy.json()["data"]["health"] == [
        {"name": name, "status": True, "statusText": f"{name}=true", "message": "OK"}
        for name in ("BackupWindowValidator", "VersionsSizeValidator", "SumOfVersionsValidator",
                     "StorageConsistencyValidator", "IntegrityValidator")
    ]
    # a closed window and no backup at all
    closed = api.get(health_path("closed"))
    assert closed.status_code == 500 and closed.json()["error"] == "one of checks failed"
    window = closed.json()["data"]["health"][0]
    assert window["name"] == "BackupWindowValidator" and window["status"] is False
    assert window["message"].startswith("cannot find any backup in the collection")

    # a version larger than maxOneVersionSize (allowed through the extra space) fails the soft-limit check
    big = pgp_message(b"b" * (2 << 20))
    assert api.request("POST", path("docs"), admin, data=big).status_code == 200
    checks = {c["name"]: c for c in api.get(health_path("docs")).json()["data"]["health"]}
    assert checks["VersionsSizeValidator"]["status"] is False
    assert checks["VersionsSizeValidator"]["message"] == (
        "maximum filesize is bigger than collection soft limit per file. "
        f"Failed file: docs-1.gpg (size={len(big)}b)")
    assert checks["SumOfVersionsValidator"]["status"] is True

    # the code may come in the Authorization header too; iwa-ait has a window that is closed now
    with_code = api.get(health_path("iwa-ait"), headers={"Authorization": "changeme-health-code"})
    assert with_code.status_code in (200, 500) and len(with_code.json()["data"]["health"]) == 5
    assert api.get(health_path("iwa-ait"), params={"code": "changeme-health-code"}).json()["data"]["health"]


def test_collection_list_shows_usage(api):
    admin = api.login("admin", PASSWORD)
    bodies = [pgp_message(b"a" * 1000), pgp_message(b"b" * 2000)]
    for body in bodies:
        assert api.request("POST", path("docs"), admin, data=body).status_code == 200
    collections = {c["id"]: c for c in api.get("/api/stable/repository/collection", admin).json()["data"]
                   ["collections"]}
    docs = collections["docs"]
    assert docs["versionsCount"] == 2 and docs["usedBytes"] == sum(map(len, bodies))
    assert docs["maxBackupsCount"] == 3 and docs["maxCollectionSize"] == 5 << 20
    assert docs["description"] == "collection docs"
    latest = datetime.fromisoformat(docs["latestVersionAt"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - latest) < timedelta(minutes=1)
    assert collections["older"]["versionsCount"] == 0 and collections["older"]["latestVersionAt"] is None


def test_ranges_head_and_etag(api):
    admin = api.login("admin", PASSWORD)
    body = pgp_message(os.urandom(10_000))
    api.request("POST", path("docs"), admin, data=body)
    url = path("docs", "/1")
    etag = f'"{hashlib.sha256(body).hexdigest()}"'

    head = api.request("HEAD", url, admin)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(body)) and head.headers["ETag"] == etag
    assert head.headers["Accept-Ranges"] == "bytes"

    cases = {"bytes=0-99": (0, 100), "bytes=100-": (100, len(body)), "bytes=-50": (len(body) - 50, len(body)),
             f"bytes=5-{len(body) + 100}": (5, len(body)), "bytes=-999999": (0, len(body))}
    for header, (start, end) in cases.items():
        response = api.get(url, admin, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == body[start:end], header
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(body)}"

    beyond = api.get(url, admin, headers={"Range": f"bytes={len(body)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(body)}"
    assert beyond.json()["status"] is False
    # several ranges or nonsense: the whole file
    for header in ("bytes=0-1,5-6", "lines=1-2", "bytes=9-3"):
        response = api.get(url, admin, headers={"Range": header})
        assert response.status_code == 200 and response.content == body, header
    # If-Range with another ETag: the client's partial copy is stale, so the whole file comes back
    stale = api.get(url, admin, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == body
    fresh = api.get(url, admin, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == body[:10]


def test_a_stalled_upload_times_out_with_408(local, config, start_server):
    write_collections_config(config)
    server = start_server(local, config, "--http-upload-timeout=2s")
    server.backend = local
    admin = server.login("admin", PASSWORD)
    raw = RawUpload(server.url, path("docs"), admin, length=100_000)
    raw.send(pgp_message(b"x" * 1000))
    status, body = raw.response(timeout=20)
    raw.close()
    assert status == 408 and body == {"status": False, "error": "Request took too long", "data": {}}
    assert wait_until(lambda: server.backend.objects() == [], timeout=10)
    assert server.request("POST", path("docs"), admin, data=pgp_message(b"x")).json()["data"]["version"][
        "versionNumber"] == 1


def test_stopping_the_server_mid_upload_leaves_nothing(local, config, start_server):
    write_collections_config(config)
    server = start_server(local, config)
    admin = server.login("admin", PASSWORD)
    raw = stalled_upload(server, local, admin, "docs", 500_000)
    server.proc.send_signal(signal.SIGTERM)
    raw.close()
    assert server.proc.wait(40) == 0
    assert local.objects() == []
    connection = sqlite3.connect(local.db_path)
    assert connection.execute("SELECT COUNT(*) FROM versions").fetchone() == (0,)
    assert connection.execute("SELECT COUNT(*) FROM upload_locks").fetchone() == (0,)


def test_a_crashed_upload_blocks_its_collection_only_until_the_lease_expires(make_backend, config, start_server):
    """SQLite: the lock is a lease that expires within a minute (PostgreSQL's dies with its holder at once:
    test_fault_tolerance.py)."""
    backend = make_backend("sqlite", "local")
    write_collections_config(config)
    server = start_server(backend, config)
    admin = server.login("admin", PASSWORD)
    raw = stalled_upload(server, backend, admin, "docs", 100_000)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    raw.close()

    expires = query(backend, "SELECT expires_at FROM upload_locks WHERE collection_id = 'docs'")[0][0]
    expires = expires if isinstance(expires, datetime) else datetime.fromisoformat(expires)
    assert expires - datetime.now(timezone.utc) <= timedelta(seconds=60)

    again = start_server(backend, config)
    admin = again.login("admin", PASSWORD)
    blocked = again.request("POST", path("docs"), admin, data=pgp_message(b"y"))
    assert blocked.status_code == 409
    # time passes: the lease runs out
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    query(backend, "UPDATE upload_locks SET expires_at = %s", (past,))
    response = again.request("POST", path("docs"), admin, data=pgp_message(b"y"))
    assert response.status_code == 200, response.text


def query(backend, sql, params=()):
    if backend.db == "sqlite":
        connection = sqlite3.connect(backend.db_path)
        if params:
            params = tuple(p.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") for p in params)
        with connection:
            rows = connection.execute(sql.replace("%s", "?"), params).fetchall()
        connection.close()
        return rows
    import psycopg2

    connection = psycopg2.connect(**backend.db_params)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows


def test_one_upload_per_collection_across_servers_sharing_a_database(make_backend, config, start_server):
    backend = make_backend("postgres", "local")
    write_collections_config(config)
    first, second = start_server(backend, config), start_server(backend, config)
    token = first.login("admin", PASSWORD)
    body = pgp_message(b"x" * 200_000)
    raw = RawUpload(first.url, path("docs"), token, length=len(body))
    raw.send(body[:50_000])
    assert wait_until(lambda: backend.objects(), timeout=5)
    refused = second.request("POST", path("docs"), token, data=pgp_message(b"y"))
    assert refused.status_code == 409
    assert refused.json()["error"] == "cannot upload to same collection in parallel"
    raw.send(body[50_000:])
    status, answer = raw.response()
    raw.close()
    assert status == 200
    # the second server sees the version the first one stored, and numbers continue across servers
    following = second.request("POST", path("docs"), token, data=pgp_message(b"y"))
    assert following.json()["data"]["version"]["versionNumber"] == 2
    assert [v["versionNumber"] for v in first.get(path("docs"), token).json()["data"]["versions"]] == [1, 2]


def test_a_storage_failure_mid_upload_is_a_503_and_leaves_no_version(tmp_path, config, start_server):
    """S3 goes away while the body streams (MinIO killed): the client gets the storage error at once, no version is
    registered and the collection's lock is released (a MinIO of its own, so that killing it harms no other test)."""
    import time

    from tests.conftest import create_bucket
    from tests.minio import MinioServer, require_minio
    from tests.support import S3_KEY, S3_SECRET, Backend

    (tmp_path / "minio").mkdir()
    store = MinioServer(tmp_path / "minio", require_minio()).start()
    try:
        endpoint = store.endpoint
        bucket = create_bucket(endpoint)
        backend = Backend("sqlite", "s3", args=[
            f"--db-path={tmp_path / 'm.sqlite3'}",
            f"--storage-url=s3://{bucket}?endpoint={endpoint}&disableSSL=true&region=eu-central-1"],
            env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
        write_collections_config(config)
        config.write(COLLECTIONS, "large", collection("large", one="100M", total="300M"))
        server = start_server(backend, config)
        admin = server.login("admin", PASSWORD)
        raw = RawUpload(server.url, path("large"), admin, chunked=True)
        message = pgp_message(b"x" * (24 << 20))
        raw.send(message[:100_000])
        time.sleep(0.5)
        store.proc.kill()
        store.proc.wait(10)
        status, body = None, None
        for index in range(20):  # libcloud notices when it sends the first 5 MiB part
            try:
                raw.send(message[100_000 + index * (1 << 20):100_000 + (index + 1) * (1 << 20)])
            except OSError:
                break
        status, body = raw.response(timeout=60)
        raw.close()
        assert status == 503
        assert body["error"] == "the storage is not available; the server log has the details"
        assert server.get(path("large"), admin).json()["data"]["versions"] == []
        # the lock is free again: the next upload gets past it (and fails on the missing storage, not with 409)
        again = server.request("POST", path("large"), admin, data=pgp_message(b"z"))
        assert again.status_code == 503, again.text
        assert "Traceback" not in server.log()
    finally:
        store.stop()


def test_a_store_that_fails_while_the_client_pauses_is_answered_at_once(tmp_path, config, start_server):
    """The store fails while the client is between two pieces of its body (MinIO hangs while it is sent a part,
    then dies): the server answers 503 within seconds and leaves no version, without waiting for the client's next
    byte or for the idle deadline (five minutes here)."""
    import time

    from tests.conftest import create_bucket
    from tests.minio import MinioServer, require_minio
    from tests.support import S3_KEY, S3_SECRET, Backend

    (tmp_path / "minio").mkdir()
    store = MinioServer(tmp_path / "minio", require_minio()).start()
    try:
        bucket = create_bucket(store.endpoint)
        backend = Backend("sqlite", "s3", args=[
            f"--db-path={tmp_path / 'm.sqlite3'}",
            f"--storage-url=s3://{bucket}?endpoint={store.endpoint}&disableSSL=true&region=eu-central-1"],
            env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
        write_collections_config(config)
        config.write(COLLECTIONS, "large", collection("large", one="100M", total="300M"))
        server = start_server(backend, config, "--http-upload-idle-timeout=5m", "--storage-io-timeout=5m")
        admin = server.login("admin", PASSWORD)
        raw = RawUpload(server.url, path("large"), admin, chunked=True)
        message = pgp_message(b"x" * (24 << 20))
        raw.send(message[:100_000])
        time.sleep(1)  # the multipart upload is created
        store.freeze()
        raw.send(message[100_000:6 << 20])  # a whole part: the server sends it to the store, which hangs
        time.sleep(1)
        store.proc.kill()  # and dies; the client sends nothing more
        store.proc.wait(10)
        began = time.monotonic()
        status, body = raw.response(timeout=30)
        raw.close()
        assert (status, body["error"]) == (503, "the storage is not available; the server log has the details")
        assert time.monotonic() - began < 15
        assert server.get(path("large"), admin).json()["data"]["versions"] == []
        assert "Traceback" not in server.log()
    finally:
        store.stop()


def test_a_version_whose_object_vanished_is_an_error_in_the_envelope(api):
    admin = api.login("admin", PASSWORD)
    api.request("POST", path("docs"), admin, data=pgp_message(b"x"))
    (api.backend.storage_path / "docs" / "docs-1.gpg").unlink()  # someone deleted it in the bucket
    response = api.get(path("docs", "/1"), admin)
    assert response.status_code == 503
    assert response.json() == {"status": False, "data": {},
                               "error": "the storage is not available; the server log has the details"}
    assert "Traceback" not in api.log() and "the store failed" in api.log()
