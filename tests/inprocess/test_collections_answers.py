"""The collections API's answers (docs/api.md#collections), in process: uploads and their refusals, version and
collection listings, downloads whole and by ranges, rotation, collection health, and the store's failures."""

import asyncio
import hashlib

import pytest

from tests.integration.collections_config import GPG_FOOTER, GPG_HEADER, PASSWORD, STREAM_ERROR, version_path
from tests.support import assert_error, pgp_message

UPLOAD_DENIED = "not authorized to upload versions to this collection"
NO_COLLECTION = "cannot find specified collection"
NO_VERSION = "cannot find specified version"
WINDOW_CLOSED = ("backup window does not allow you to send a backup at this time. "
                 "You need a token that has a special permission 'uploadsAnytime'")
STORAGE_UNAVAILABLE = "the storage is not available; the server log has the details"
CHECKS = ["BackupWindowValidator", "VersionsSizeValidator", "SumOfVersionsValidator", "StorageConsistencyValidator",
          "IntegrityValidator"]


def upload(api, token, collection_id, body: bytes, **kwargs):
    return api.request("POST", version_path(collection_id), token, data=body, **kwargs)


def uploaded(api, token, collection_id, body: bytes) -> dict:
    response = upload(api, token, collection_id, body)
    assert response.status_code == 200, response.text
    return response.json()["data"]["version"]


def health_path(collection_id: str) -> str:
    return f"/api/stable/repository/collection/{collection_id}/health"


def test_an_upload_is_answered_with_its_version(api):
    token = api.login("writer", PASSWORD)
    body = pgp_message(b"a backup" * 100)
    response = upload(api, token, "docs", body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] is True
    version = response.json()["data"]["version"]
    assert set(version) == {"id", "collectionId", "versionNumber", "filename", "filesize", "sha256",
                            "uploadedBySessionId", "user", "CreatedAt", "UpdatedAt", "DeletedAt"}
    assert (version["collectionId"], version["versionNumber"], version["filename"]) == ("docs", 1, "docs-1.gpg")
    assert version["filesize"] == len(body) and version["sha256"] == hashlib.sha256(body).hexdigest()
    assert (version["user"], version["DeletedAt"]) == ("writer", None)
    assert api.backend.objects() == ["docs/docs-1.gpg"]
    # the Go server's alpha path and a multipart form with the file in its part "file"
    form = upload(api, token, "docs", b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.gpg\""
                  b"\r\n\r\n" + body + b"\r\n--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert form.status_code == 200 and form.json()["data"]["version"]["filesize"] == len(body)
    alpha = api.request("POST", "/api/alpha/repository/collection/docs/version", token, data=body)
    assert alpha.json()["data"]["version"]["versionNumber"] == 3


@pytest.mark.parametrize("login, collection_id, body, status, message", [
    ("admin", "docs", b"-- PostgreSQL database dump\n" + bytes(1000), 400, GPG_HEADER),
    ("admin", "docs", b"-----BEGIN PGP MESSAGE-----\n" + b"A" * 1000, 400, GPG_FOOTER),
    ("admin", "docs", b"", 400, STREAM_ERROR + "sent empty data"),
    ("admin", "docs", pgp_message(b"x")[:-1], 400, GPG_FOOTER),
    ("reader", "docs", pgp_message(b"x"), 403, UPLOAD_DENIED),
    ("nobody", "docs", pgp_message(b"x"), 403, UPLOAD_DENIED),
    ("writer", "closed", pgp_message(b"x"), 403, WINDOW_CLOSED),
    ("admin", "nope", pgp_message(b"x"), 404, NO_COLLECTION),
])
def test_a_refused_upload_is_answered_and_leaves_nothing(api, login, collection_id, body, status, message):
    token = api.login(login, PASSWORD)
    assert_error(upload(api, token, collection_id, body), status, message)
    assert api.backend.objects() == []
    # no number was used up and no lock is left
    assert uploaded(api, api.login("admin", PASSWORD), "docs", pgp_message(b"ok"))["versionNumber"] == 1


def test_an_upload_over_the_budget_is_413(api):
    """docs: 3 × 1M within 5M, so an empty collection takes 3 MiB at once; refused on its Content-Length, and
    chunked the moment it is passed."""
    token = api.login("admin", PASSWORD)
    budget = 3 << 20
    too_big = pgp_message(bytes(budget))
    assert_error(upload(api, token, "docs", too_big), 413, STREAM_ERROR + "filesize reached allowed limit. "
                 f"Uploaded {len(too_big)} bytes, allowed to upload only {budget} bytes")

    async def in_pieces(write):
        for start in range(0, len(too_big), 1 << 16):
            await write(too_big[start:start + (1 << 16)])

    chunked = api.request("POST", version_path("docs"), token, body_producer=in_pieces)
    assert chunked.status_code == 413
    assert chunked.json()["error"].startswith(STREAM_ERROR + "filesize reached allowed limit. Uploaded ")
    assert api.backend.objects() == []


def test_a_second_upload_while_one_runs_is_409(api):
    token = api.login("admin", PASSWORD)
    body = pgp_message(bytes(200_000))
    authorization = {"Authorization": f"Bearer {token}"}

    async def race():
        halfway = asyncio.Event()
        go_on = asyncio.Event()

        async def slowly(write):
            await write(body[:100_000])
            halfway.set()
            await go_on.wait()
            await write(body[100_000:])

        first = asyncio.ensure_future(api.fetch(
            "POST", version_path("docs"), headers={**authorization, "Content-Length": str(len(body))},
            body_producer=slowly))
        await halfway.wait()
        second = await api.fetch("POST", version_path("docs"), headers=authorization, body=pgp_message(b"second"))
        go_on.set()
        return await first, second

    first, second = api.runner.run(race())
    assert_error(second, 409, "cannot upload to same collection in parallel")
    assert first.status_code == 200 and first.json()["data"]["version"]["versionNumber"] == 1


def test_version_listing(api):
    writer = api.login("writer", PASSWORD)
    bodies = [pgp_message(b"one"), pgp_message(b"two")]
    for body in bodies:
        uploaded(api, writer, "docs", body)
    listed = api.get(version_path("docs"), api.login("reader", PASSWORD))
    assert listed.status_code == 200
    assert [(v["versionNumber"], v["filesize"]) for v in listed.json()["data"]["versions"]] == [
        (1, len(bodies[0])), (2, len(bodies[1]))]
    assert api.get(version_path("docs"), writer).status_code == 200  # upload permission lists too
    assert_error(api.get(version_path("docs"), api.login("nobody", PASSWORD)), 403, "not authorized to list versions")
    assert_error(api.get(version_path("nope"), writer), 404, NO_COLLECTION)
    assert_error(api.get(version_path("docs")), 401, "auth header is empty")


def test_a_download_is_the_stored_file(api):
    body = pgp_message(b"the whole backup" * 100)
    version = uploaded(api, api.login("writer", PASSWORD), "docs", body)
    reader = api.login("reader", PASSWORD)
    for reference in ("1", "v1", "latest"):
        response = api.get(version_path("docs", f"/{reference}"), reader)
        assert response.status_code == 200 and response.content == body
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"] == 'attachment; filename="docs-1.gpg"'
        assert response.headers["ETag"] == f'"{version["sha256"]}"'
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Content-Length"] == str(len(body))
    head = api.request("HEAD", version_path("docs", "/latest"), reader)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(body))
    alpha = api.get("/api/alpha/repository/collection/docs/version/1", reader)
    assert alpha.content == body


def test_a_download_by_range(api):
    body = pgp_message(bytes(range(256)) * 4)
    size = len(body)
    etag = f'"{uploaded(api, api.login("writer", PASSWORD), "docs", body)["sha256"]}"'
    reader = api.login("reader", PASSWORD)

    def get(headers):
        return api.get(version_path("docs", "/latest"), reader, headers=headers)

    for wanted, (start, end) in {"bytes=10-19": (10, 20), "bytes=-5": (size - 5, size),
                                 f"bytes={size - 3}-": (size - 3, size), "bytes=0-99999": (0, size)}.items():
        part = get({"Range": wanted})
        assert part.status_code == 206, wanted
        assert part.content == body[start:end]
        assert part.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        assert part.headers["Content-Length"] == str(end - start)
    beyond = get({"Range": f"bytes={size}-"})
    assert_error(beyond, 416, "requested range not satisfiable")
    assert beyond.headers["Content-Range"] == f"bytes */{size}"
    assert "ETag" not in beyond.headers
    # several ranges, a malformed header, or another version's ETag in If-Range: the whole file
    for headers in ({"Range": "bytes=0-1,5-6"}, {"Range": "lines=1-2"},
                    {"Range": "bytes=0-9", "If-Range": '"another"'}):
        whole = get(headers)
        assert whole.status_code == 200 and whole.content == body, headers
    assert get({"Range": "bytes=0-9", "If-Range": etag}).status_code == 206


def test_a_refused_download(api):
    uploaded(api, api.login("writer", PASSWORD), "docs", pgp_message(b"x"))
    reader = api.login("reader", PASSWORD)
    for reference in ("2", "v0", "abc", "9" * 30):
        assert_error(api.get(version_path("docs", f"/{reference}"), reader), 404, NO_VERSION)
    assert_error(api.get(version_path("nope", "/1"), reader), 404, NO_COLLECTION)
    assert_error(api.get(version_path("docs", "/1"), api.login("writer", PASSWORD)), 403,
                 "not authorized to download versions from this collection")
    assert_error(api.get(version_path("docs", "/1")), 401, "auth header is empty")


def test_rotation_keeps_the_newest(api):
    """docs keeps 3 versions (fifo): the fourth upload pushes the first out, its row and its object."""
    token = api.login("admin", PASSWORD)
    for index in range(4):
        uploaded(api, token, "docs", pgp_message(b"%d" % index))
    listed = api.get(version_path("docs"), token).json()["data"]["versions"]
    assert [v["versionNumber"] for v in listed] == [2, 3, 4]
    assert api.backend.objects() == ["docs/docs-2.gpg", "docs/docs-3.gpg", "docs/docs-4.gpg"]
    assert_error(api.get(version_path("docs", "/1"), token), 404, NO_VERSION)
    assert api.get(version_path("docs", "/latest"), token).content == pgp_message(b"3")
    assert uploaded(api, token, "docs", pgp_message(b"4"))["versionNumber"] == 5


def test_collection_listing(api):
    admin = api.login("admin", PASSWORD)
    body = pgp_message(b"listed")
    stored = uploaded(api, admin, "docs", body)
    answer = api.get("/api/stable/repository/collection", admin)
    assert answer.status_code == 200
    collections = answer.json()["data"]["collections"]
    assert [c["id"] for c in collections] == ["closed", "docs", "iwa-ait", "older", "open"]
    docs = collections[1]
    assert docs == {"id": "docs", "description": "collection docs", "versionsCount": 1, "usedBytes": len(body),
                    "maxBackupsCount": 3, "maxCollectionSize": 5 << 20, "latestVersionAt": stored["CreatedAt"]}
    assert collections[0]["latestVersionAt"] is None
    reader = api.get("/api/stable/repository/collection", api.login("reader", PASSWORD))
    assert [c["id"] for c in reader.json()["data"]["collections"]] == ["docs"]
    assert api.get("/api/stable/repository/collection", api.login("nobody", PASSWORD)).json()["data"] == {
        "collections": []}
    assert_error(api.get("/api/stable/repository/collection"), 401, "auth header is empty")


def test_collection_health(api):
    healthy = api.get(health_path("docs"))
    assert healthy.status_code == 200
    assert healthy.json()["data"]["health"] == [
        {"name": name, "status": True, "statusText": f"{name}=true", "message": "OK"} for name in CHECKS]
    # a window that is closed now, and no backup in it
    closed = api.get(health_path("closed"))
    assert closed.status_code == 500 and closed.json()["error"] == "one of checks failed"
    window = closed.json()["data"]["health"][0]
    assert (window["name"], window["status"]) == ("BackupWindowValidator", False)
    assert window["message"] == "cannot find any backup in the collection: no version was uploaded yet"
    # iwa-ait (the example) wants its code: sha256 of "changeme-health-code"
    wrong = "not authorized - invalid value of 'code' parameter in query string"
    assert_error(api.get(health_path("iwa-ait") + "?code=wrong"), 403, wrong)
    assert_error(api.get(health_path("iwa-ait")), 403, wrong)
    with_code = api.get(health_path("iwa-ait"), headers={"Authorization": "changeme-health-code"})
    assert with_code.status_code in (200, 500) and len(with_code.json()["data"]["health"]) == 5
    assert_error(api.get(health_path("nope")), 404, NO_COLLECTION)


def test_an_object_missing_from_the_store(api):
    """A version whose object left the store behind the server's back: its download is a 503 (the store failed,
    retry later), and the collection's health names it."""
    token = api.login("admin", PASSWORD)
    uploaded(api, token, "docs", pgp_message(b"x"))
    api.backend.delete_object("docs/docs-1.gpg")
    response = api.get(version_path("docs", "/1"), token)
    assert_error(response, 503, STORAGE_UNAVAILABLE)
    assert response.headers["Retry-After"] == "5"
    assert "Content-Disposition" not in response.headers and "ETag" not in response.headers
    checks = {c["name"]: c for c in api.get(health_path("docs")).json()["data"]["health"]}
    assert checks["StorageConsistencyValidator"]["message"] == (
        "versions registered without their object in the storage: v1 (docs-1.gpg)")

