"""Uploads, downloads and listings (docs/api.md#collections) against a real server on every database × storage backend,
with real gpg and real curl; and on Azure Blob Storage (Azurite) and Google Cloud Storage's emulator with SQLite."""

import hashlib
import json
import os
import subprocess
import threading

import pytest

from tests.conftest import STORES
from tests.integration.collections_config import PASSWORD, STREAM_ERROR, write_collections_config, version_path
from tests.support import RawUpload, assert_error, pgp_message, wait_until



@pytest.fixture(params=STORES, ids=[f"{db}-{store}" for db, store in STORES])
def backend(request, make_backend):
    return make_backend(*request.param)


@pytest.fixture
def config(config):
    """The users and collections of collections_config.py (conftest's ``api`` starts the server on them)."""
    write_collections_config(config)
    return config


def upload(server, token, collection, body, **kwargs):
    return server.request("POST", version_path(collection), token, data=body, **kwargs)


def listed(server, token, collection):
    response = server.get(version_path(collection), token)
    assert response.status_code == 200, response.text
    return [(v["versionNumber"], v["filesize"]) for v in response.json()["data"]["versions"]]


def curl(*args) -> bytes:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, check=True).stdout


def test_gpg_files_round_trip_through_curl(api, gpg, tmp_path):
    """Armored with -F, binary with --data-binary, chunked with -T - from a pipe; download whole and resumed."""
    token = api.login("admin", PASSWORD)
    auth = f"Authorization: Bearer {token}"
    url = api.url + version_path("docs")
    plain = [os.urandom(200_000), os.urandom(150_000), os.urandom(300_000)]

    armored_file = tmp_path / "one.asc"
    armored_file.write_bytes(gpg.encrypt(plain[0], armor=True))
    binary_file = tmp_path / "two.gpg"
    binary_file.write_bytes(gpg.encrypt(plain[1], armor=False))
    chunked_body = gpg.encrypt(plain[2], armor=True)

    first = json.loads(curl("-H", auth, "-F", f"file=@{armored_file}", url))
    assert first["status"] is True and first["data"]["version"]["versionNumber"] == 1
    second = json.loads(curl("-H", auth, "--data-binary", f"@{binary_file}", url))
    assert second["data"]["version"]["versionNumber"] == 2
    pipe = subprocess.run(["curl", "-sS", "-H", auth, "-X", "POST", "-T", "-", url], input=chunked_body,
                          capture_output=True, check=True).stdout
    third = json.loads(pipe)["data"]["version"]
    assert third["versionNumber"] == 3 and third["filesize"] == len(chunked_body)
    assert third["sha256"] == hashlib.sha256(chunked_body).hexdigest()

    versions = api.get(version_path("docs"), token).json()["data"]["versions"]
    assert [v["versionNumber"] for v in versions] == [1, 2, 3]
    assert versions[0]["filesize"] == armored_file.stat().st_size
    assert versions[1]["sha256"] == hashlib.sha256(binary_file.read_bytes()).hexdigest()
    assert set(versions[0]) >= {"id", "collectionId", "versionNumber", "filename", "filesize", "sha256",
                                "uploadedBySessionId", "user", "CreatedAt", "UpdatedAt", "DeletedAt"}
    assert versions[0]["filename"] == "docs-1.gpg" and versions[0]["user"] == "admin"

    for number, ref in ((1, "1"), (2, "v2"), (3, "latest")):
        response = api.get(version_path("docs", f"/{ref}"), token)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"] == f'attachment; filename="docs-{number}.gpg"'
        assert response.headers["ETag"] == f'"{versions[number - 1]["sha256"]}"'
        assert gpg.decrypt(response.content) == plain[number - 1]

    # a broken restore resumes with Range: the pieces put together decrypt to the original
    whole = binary_file.read_bytes()
    head = curl("-H", auth, "-r", "0-9999", api.url + version_path("docs", "/2"))
    tail_file = tmp_path / "resumed.gpg"
    tail_file.write_bytes(head)
    curl("-H", auth, "-C", "-", "-o", str(tail_file), api.url + version_path("docs", "/2"))
    assert tail_file.read_bytes() == whole
    assert gpg.decrypt(tail_file.read_bytes()) == plain[1]

    assert sorted(api.backend.objects()) == ["docs/docs-1.gpg", "docs/docs-2.gpg", "docs/docs-3.gpg"]


def test_failed_uploads_leave_nothing_behind(api):
    token = api.login("admin", PASSWORD)
    megabyte = os.urandom(1 << 20)

    assert_error(upload(api, token, "docs", b"-- PostgreSQL database dump\n" + os.urandom(1000)), 400,
                 STREAM_ERROR + "first chunk of uploaded data does not contain a valid GPG header")
    assert_error(upload(api, token, "docs", b""), 400, STREAM_ERROR + "sent empty data")
    assert_error(upload(api, token, "docs", b"-----BEGIN PGP MESSAGE-----\n" + megabyte), 400,
                 STREAM_ERROR + "end of stream does not contain a valid GPG footer, suspecting a data corruption")
    # 1M per version + 2M extra: 3 MiB is the budget of an empty collection
    too_big = pgp_message(os.urandom(3 << 20))
    assert_error(upload(api, token, "docs", too_big), 413,
                 STREAM_ERROR + f"filesize reached allowed limit. Uploaded {len(too_big)} bytes, "
                 f"allowed to upload only {3 << 20} bytes")
    # chunked, no Content-Length: cancelled while streaming, the moment the count passes the budget
    chunked = upload(api, token, "docs", (too_big[i:i + 65536] for i in range(0, len(too_big), 65536)))
    assert chunked.status_code == 413
    assert chunked.json()["error"].startswith(STREAM_ERROR + "filesize reached allowed limit. Uploaded ")
    assert chunked.json()["error"].endswith(f"allowed to upload only {3 << 20} bytes")

    # a client that goes away in the middle of the body
    raw = RawUpload(api.url, version_path("docs"), token, length=2 << 20)
    raw.send(pgp_message(megabyte)[:-100])
    wait_until(lambda: api.backend.objects(), timeout=5)
    raw.close()

    assert wait_until(lambda: api.backend.objects() == [], timeout=10), api.backend.objects()
    assert listed(api, token, "docs") == []
    # the lock was released and no version number was used up
    ok = upload(api, token, "docs", pgp_message(b"x" * 1000))
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["version"]["versionNumber"] == 1
    assert api.backend.objects() == ["docs/docs-1.gpg"]


def sized(total: int) -> bytes:
    """A well-formed (unencrypted) OpenPGP body of exactly ``total`` bytes."""
    return pgp_message(b"z" * (total - len(pgp_message(b""))))


def test_quota_uses_extra_space_once(api):
    """5M in total for 3 × 1M: a version may use the 2M extra; what is used is not available to the next one."""
    token = api.login("admin", PASSWORD)
    assert upload(api, token, "docs", sized(3 << 20)).status_code == 200  # 1M + all of the 2M extra
    response = upload(api, token, "docs", sized((1 << 20) + 1))
    assert_error(response, 413, STREAM_ERROR + f"filesize reached allowed limit. Uploaded {(1 << 20) + 1} "
                 f"bytes, allowed to upload only {1 << 20} bytes")
    assert upload(api, token, "docs", sized(1 << 20)).status_code == 200  # exactly the limit
    assert listed(api, token, "docs") == [(1, 3 << 20), (2, 1 << 20)]
    assert upload(api, token, "docs", sized(1 << 20)).status_code == 200
    # the next upload rotates the first version out, so its extra space is available again
    assert upload(api, token, "docs", sized(3 << 20)).status_code == 200
    assert listed(api, token, "docs") == [(2, 1 << 20), (3, 1 << 20), (4, 3 << 20)]


def test_fifo_rotation_keeps_the_newest(api):
    token = api.login("writer", PASSWORD)
    for index in range(5):
        assert upload(api, token, "docs", pgp_message(b"%d" % index)).status_code == 200
    reader = api.login("reader", PASSWORD)
    assert [number for number, _ in listed(api, reader, "docs")] == [3, 4, 5]
    assert api.backend.objects() == ["docs/docs-3.gpg", "docs/docs-4.gpg", "docs/docs-5.gpg"]
    assert api.get(version_path("docs", "/1"), reader).status_code == 404
    assert api.get(version_path("docs", "/latest"), reader).content == pgp_message(b"4")


def test_fifo_plus_older_keeps_one_older_copy(api):
    token = api.login("writer", PASSWORD)
    for index in range(5):
        assert upload(api, token, "older", pgp_message(b"%d" % index)).status_code == 200
    # the newest two, plus one older copy younger than 1h
    assert [number for number, _ in listed(api, token, "older")] == [3, 4, 5]
    assert api.backend.objects() == ["older/older-3.gpg", "older/older-4.gpg", "older/older-5.gpg"]


def test_version_numbers_are_never_reused_after_rotation(api):
    token = api.login("admin", PASSWORD)
    for _ in range(4):
        upload(api, token, "docs", pgp_message(b"v"))
    assert [number for number, _ in listed(api, token, "docs")] == [2, 3, 4]
    assert upload(api, token, "docs", pgp_message(b"v")).json()["data"]["version"]["versionNumber"] == 5


def test_two_uploads_race_for_one_collection(api):
    token = api.login("admin", PASSWORD)
    body = pgp_message(os.urandom(300_000))
    first = RawUpload(api.url, version_path("docs"), token, length=len(body))
    first.send(body[:100_000])
    wait_until(lambda: api.backend.objects(), timeout=5)

    second = upload(api, token, "docs", pgp_message(b"second"))
    assert_error(second, 409, "cannot upload to same collection in parallel")
    # another collection is not blocked
    assert upload(api, token, "older", pgp_message(b"elsewhere")).status_code == 200

    first.send(body[100_000:])
    status, answer = first.response()
    first.close()
    assert status == 200 and answer["data"]["version"]["versionNumber"] == 1
    assert upload(api, token, "docs", pgp_message(b"third")).status_code == 200


def test_many_racing_uploads_store_exactly_one_each_time(api):
    token = api.login("admin", PASSWORD)
    results = []

    def send(index):
        results.append(upload(api, token, "docs", pgp_message(os.urandom(200_000))).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = results.count(200)
    assert stored >= 1 and set(results) <= {200, 409}
    numbers = [number for number, _ in listed(api, token, "docs")]
    assert numbers == list(range(1, stored + 1))[-3:]


def test_an_object_nobody_registered_is_never_overwritten(api):
    """Objects of the Go server in the same bucket, or left by a crash, keep their name: the number is skipped."""
    token = api.login("admin", PASSWORD)
    api.backend.put_object("docs/docs-1.gpg", b"written by the Go server")
    response = upload(api, token, "docs", pgp_message(b"new"))
    assert response.json()["data"]["version"]["versionNumber"] == 2
    assert api.backend.get_object("docs/docs-1.gpg") == b"written by the Go server"
    assert api.get(version_path("docs", "/latest"), token).content == pgp_message(b"new")
    assert "docs/docs-1.gpg already exists in the store without a version owning it" in api.log()
