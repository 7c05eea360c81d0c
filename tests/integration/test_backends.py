"""The storage backend contract, one checklist run on every store the server supports — a local directory, S3
(MinIO), Google Cloud Storage (fake-gcs-server) and Azure Blob Storage (Azurite), each a real server on loopback
(tests/conftest.py make_backend): the server's BlobStore writes a streamed object and reports its size and sha256,
reads it whole and by ranges, lists and sizes it, refuses a size mid-way and aborts a stream leaving nothing (no
object, no unfinished multipart upload or staged block), removes and confirms, and passes its health round trip.
A new backend gets this list to pass before the collection suite runs on it."""

import asyncio
import contextlib
import hashlib
import os

import pytest

from backup_repository.failures import StorageError
from backup_repository.storage.blobstore import BlobStore

STORES = ["local", "s3", "gcs", "azure"]
#: A streamed body of several pieces of odd sizes, past the 5 MiB parts (S3), 4 MiB blocks (Azure) and 8 MiB
#: requests (GCS) that the backends cut it into.
PIECES = [os.urandom(size) for size in (1, 65_537, 3 << 20, (5 << 20) + 3, 777, (4 << 20) - 1)]
BODY = b"".join(PIECES)


@pytest.fixture(params=STORES)
def store(request, make_backend, monkeypatch):
    """(the BlobStore of a fresh bucket/container/directory, the tests' view of that store)."""
    backend = make_backend("sqlite", request.param)
    for name, value in backend.env.items():
        monkeypatch.setenv(name, value)
    url = next(arg.split("=", 1)[1] for arg in backend.args if arg.startswith("--storage-url="))
    return BlobStore.from_url(url), backend


def run(coroutine):
    return asyncio.run(coroutine)


async def write(blobs: BlobStore, name: str, pieces, check_size=None):
    writer = blobs.writer(name, check_size=check_size)
    for piece in pieces:
        waiting = writer.write(piece)
        if waiting is not None:
            await waiting
    return await writer.close()


async def read(blobs: BlobStore, name: str, start: int = 0, end: int = None) -> bytes:
    async with contextlib.aclosing(blobs.read(name, start, end)) as chunks:
        return b"".join([bytes(chunk) async for chunk in chunks])


def test_a_streamed_object_is_stored_whole_and_read_back_by_ranges(store):
    blobs, backend = store

    async def check():
        await blobs.open()
        try:
            stored = await write(blobs, "c/c-1.gpg", PIECES)
            assert (stored.size, stored.sha256) == (len(BODY), hashlib.sha256(BODY).hexdigest())
            assert await blobs.size("c/c-1.gpg") == len(BODY)
            assert await blobs.size("c/absent.gpg") is None
            assert [name for name, _ in await blobs.objects()] == ["c/c-1.gpg"]
            assert await read(blobs, "c/c-1.gpg") == BODY
            for start, end in ((0, 1), (1, 65_538), ((5 << 20) - 7, (9 << 20) + 11), (len(BODY) - 5, None),
                               (len(BODY) - 1, len(BODY))):
                assert await read(blobs, "c/c-1.gpg", start, end) == BODY[start:end], (start, end)
        finally:
            await blobs.close()

    run(check())
    assert backend.objects() == ["c/c-1.gpg"]
    assert backend.get_object("c/c-1.gpg") == BODY


def test_an_empty_stream_is_an_empty_object(store):
    blobs, backend = store

    async def check():
        await blobs.open()
        try:
            stored = await write(blobs, "c/empty.gpg", [])
            assert (stored.size, stored.sha256) == (0, hashlib.sha256(b"").hexdigest())
            assert await blobs.size("c/empty.gpg") == 0
            assert await read(blobs, "c/empty.gpg") == b""
        finally:
            await blobs.close()

    run(check())
    assert backend.objects() == ["c/empty.gpg"]


def test_a_refused_size_and_an_aborted_stream_leave_nothing(store):
    blobs, backend = store

    async def check():
        await blobs.open()
        try:
            def refuse(size):
                if size > 1 << 20:
                    raise ValueError("over the collection's budget")

            with pytest.raises(StorageError):
                await write(blobs, "c/refused.gpg", PIECES, check_size=refuse)
            writer = blobs.writer("c/aborted.gpg")
            for piece in PIECES[:4]:  # a part or block uploaded already, then the client goes away
                waiting = writer.write(piece)
                if waiting is not None:
                    await waiting
            await asyncio.sleep(0.5)
            await writer.abort()
            assert await blobs.objects() == []
        finally:
            await blobs.close()

    run(check())
    assert backend.objects() == []  # no object, and no unfinished multipart upload or staged block either


def test_remove_confirms_and_the_health_round_trip_leaves_nothing(store):
    blobs, backend = store

    async def check():
        await blobs.open()
        try:
            await blobs.put_bytes("c/small.gpg", b"small")
            assert await blobs.get_bytes("c/small.gpg") == b"small"
            assert await blobs.remove("c/small.gpg") is None
            assert await blobs.size("c/small.gpg") is None
            assert await blobs.remove("c/small.gpg") is None  # absent already: nothing to refuse
            await blobs.health_check(timeout=30)
            assert await blobs.objects() == []
        finally:
            await blobs.close()

    run(check())
    assert backend.objects() == []
