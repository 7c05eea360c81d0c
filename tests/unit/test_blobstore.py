"""The blob store on a real local directory: atomic streamed writes, aborts, size checks, ranged reads."""

import asyncio
import hashlib
import os
from contextlib import aclosing
from pathlib import Path

import pytest

from backup_repository.failures import StorageError
from backup_repository.storage.blobstore import HIGH_WATER, BlobStore, _reason
from backup_repository.storage.local import LocalBackend


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return BlobStore.from_url(f"file://{tmp_path / 'store'}")


def files(store) -> list:
    """Every file under the store's directory (temporary upload files included), as object names."""
    root = Path(store.backend.root)
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_streamed_write_appears_only_when_complete(store):
    data = [os.urandom(300_000) for _ in range(10)]

    async def scenario():
        writer = store.writer("c/one.gpg")
        for chunk in data:
            waiting = writer.write(chunk)
            if waiting is not None:
                await waiting
        await asyncio.sleep(0.05)
        visible_before = [n for n in files(store) if not n.startswith("c/.")]
        stored = await writer.close()
        return visible_before, stored

    visible_before, stored = asyncio.run(scenario())
    assert visible_before == []
    assert stored.size == sum(map(len, data)) and stored.sha256 == hashlib.sha256(b"".join(data)).hexdigest()
    assert files(store) == ["c/one.gpg"]
    assert store.backend.get_bytes("c/one.gpg") == b"".join(data)


def test_an_aborted_write_leaves_nothing(store):
    async def scenario():
        writer = store.writer("c/two.gpg")
        writer.write(os.urandom(3 << 20))
        await asyncio.sleep(0.05)
        partial = files(store)
        await writer.abort()
        return partial

    partial = asyncio.run(scenario())
    assert len(partial) == 1 and partial[0].startswith("c/.two.gpg.upload-")
    assert files(store) == []


def test_a_refused_size_leaves_nothing(store):
    def refuse(size):
        raise ValueError(f"expected another size than {size}")

    async def scenario():
        writer = store.writer("c/three.gpg", check_size=refuse)
        writer.write(b"data")
        await writer.close()

    with pytest.raises(StorageError, match="expected another size than 4"):
        asyncio.run(scenario())
    assert files(store) == []


def test_back_pressure_when_the_store_is_slow(store, monkeypatch):
    """While the writing thread is blocked, write() hands back a future instead of buffering without limit."""
    import threading

    gate = threading.Event()
    original = store.backend.write_stream

    def slow(name, chunks, check_size=None, retain_until=None):
        gate.wait(10)
        return original(name, chunks, check_size, retain_until)

    monkeypatch.setattr(store.backend, "write_stream", slow)

    async def scenario():
        writer = store.writer("c/slow.gpg")
        queued = 0
        while True:
            waiting = writer.write(b"x" * (1 << 20))
            queued += 1
            if waiting is not None:
                break
        assert not waiting.done()
        gate.set()
        await asyncio.wait_for(waiting, 10)
        await writer.close()
        return queued

    queued = asyncio.run(scenario())
    expected = HIGH_WATER >> 20  # about HIGH_WATER of 1 MiB pieces were taken before the pause
    assert expected <= queued <= expected + 1, queued


def test_ranged_reads(store):
    data = os.urandom(3 << 20)
    store.backend.put_bytes("c/r.gpg", data)

    async def read(start, end):
        out = b""
        async with aclosing(store.read("c/r.gpg", start, end)) as chunks:
            async for chunk in chunks:
                out += chunk
        return out

    assert asyncio.run(read(0, None)) == data
    assert asyncio.run(read(5, 1 << 20)) == data[5:1 << 20]
    assert asyncio.run(read((2 << 20) + 1, len(data))) == data[(2 << 20) + 1:]


def test_object_names_cannot_escape_the_directory(tmp_path):
    backend = LocalBackend(str(tmp_path))
    for name in ("../x", "a/../../x", "", "/abs", "a//b", "./a"):
        with pytest.raises(ValueError):
            backend.put_bytes(name, b"x")


def test_an_s3_store_behind_tls_streams_downloads_without_asking_twice(monkeypatch):
    """A relay by splice moves the bytes as they come over the wire: behind TLS they are ciphertext, so the store is
    not asked for a relay at all (no GET made only to be closed): the download streams through ``read``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = BlobStore.from_url("s3://bucket?endpoint=127.0.0.1:1&region=eu-central-1")  # https, nothing listens
    assert asyncio.run(store.open_sender("c/one.gpg", 0, 10)) is None


@pytest.mark.parametrize("text, reason", [
    ("<LibcloudError in <S3StorageDriver> '<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied"
     "</Code><Message>Access Denied.</Message><Key>two/two-1.gpg</Key><RequestId>18EE</RequestId></Error>'>",
     "AccessDenied: Access Denied."),
    ("<Error><Code>InvalidRequest</Code><Message>Object &apos;x&apos; is WORM protected</Message></Error>",
     "InvalidRequest: Object 'x' is WORM protected"),
    ("<Error><Code>SlowDown</Code></Error>", "SlowDown"),
    ("AuthorizationFailure: Server failed\n  to authenticate the request.",
     "AuthorizationFailure: Server failed to authenticate the request."),
    ("", "OSError"),
])
def test_a_stores_refusal_is_told_by_its_code_and_message(text, reason):
    assert _reason(OSError(text) if text else OSError()) == reason


def test_a_long_reason_is_cut():
    assert len(_reason(OSError("x" * 1000))) == 300

