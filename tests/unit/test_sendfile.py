"""Objects of a local store sent by sendfile (storage/sendfile.py) to a real TCP connection on loopback: ranges, a
reader that stops reading, one that goes away, a short file, the store closing, a send that never got a thread,
and the bound on sending threads; a store's answer relayed by splice: whole after its first bytes, ended early, reset,
silent."""

import asyncio
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backup_repository.failures import StorageError
from backup_repository.storage.blobstore import SENDING_THREADS, BlobStore
from backup_repository.storage.sendfile import SEND_WAKE_MS, LocalFile, relay_range

MIB = 1 << 20


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return BlobStore.from_url(f"file://{tmp_path / 'store'}")


@pytest.fixture
def data(store) -> bytes:
    data = os.urandom(5 * MIB + 12345)
    store.backend.put_bytes("c/one.gpg", data)
    return data


@pytest.fixture
def large(store) -> int:
    """An object larger than what a loopback connection's buffers hold: its sender must wait for the reader."""
    store.backend.put_bytes("c/large.gpg", os.urandom(32 * MIB))
    return 32 * MIB


def tcp_pair():
    """(the server's end, non-blocking as Tornado's, the client's end) of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    return server, client


def receive(sock, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        piece = sock.recv(MIB)
        if not piece:
            break
        received += piece
    return bytes(received)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def cancelled(sending, file, *sockets) -> float:
    """Cancel ``sending``, wait until it has ended, close ``file`` and the sockets; the seconds it took."""
    began = time.monotonic()
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    waited = time.monotonic() - began
    file.close()
    for sock in sockets:
        sock.close()
    return waited


def test_ranges_are_sent_whole(store, data):
    async def send(start, end):
        server, client = tcp_pair()
        counted, received = [], []
        reader = threading.Thread(target=lambda: received.append(receive(client, end - start)), daemon=True)
        reader.start()
        file = await store.open_sender("c/one.gpg", start, end)
        try:
            sent = await file.send(server, start, end, counted.append)
        finally:
            file.close()
        reader.join()
        server.close()
        client.close()
        return sent, sum(counted), received[0]

    fds = open_fds()
    for start, end in ((0, len(data)), (1, 2), (4095, 3 * MIB + 17), (len(data) - 3, len(data))):
        sent, counted, received = asyncio.run(send(start, end))
        assert sent == counted == end - start and received == data[start:end]
    assert open_fds() == fds


def test_a_reader_that_stops_reading_is_left_within_a_second_once_cancelled(store, large):
    async def scenario():
        server, client = tcp_pair()
        file = await store.open_sender("c/large.gpg", 0, large)
        sending = asyncio.ensure_future(file.send(server, 0, large, lambda count: None))
        await asyncio.sleep(0.3)  # the socket's buffers are full: the thread waits in poll()
        assert not sending.done()
        return await cancelled(sending, file, server, client)

    fds = open_fds()
    assert asyncio.run(scenario()) < SEND_WAKE_MS / 1000 + 0.5
    assert open_fds() == fds  # the thread closed its duplicates


def test_a_client_that_goes_away_is_a_connection_error(store, large):
    async def scenario():
        server, client = tcp_pair()
        file = await store.open_sender("c/large.gpg", 0, large)
        sending = asyncio.ensure_future(file.send(server, 0, large, lambda count: None))
        await asyncio.sleep(0.2)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # a reset
        try:
            with pytest.raises(ConnectionError):
                await sending
        finally:
            file.close()
            server.close()

    asyncio.run(scenario())


def test_a_short_file_is_a_storage_error(store, data):
    async def scenario():
        server, client = tcp_pair()
        file = await store.open_sender("c/one.gpg", 0, len(data))
        os.truncate(os.path.join(store.backend.root, "c", "one.gpg"), MIB)
        reader = threading.Thread(target=receive, args=(client, len(data)))
        reader.start()
        try:
            with pytest.raises(StorageError, match=f"the file ended at byte {MIB}, {len(data) - MIB} bytes early"):
                await file.send(server, 0, len(data), lambda count: None)
        finally:
            file.close()
            server.close()
            reader.join()
            client.close()

    asyncio.run(scenario())


def test_a_missing_object_is_a_storage_error_before_anything_is_sent(store):
    with pytest.raises(StorageError, match="cannot read c/none.gpg"):
        asyncio.run(store.open_sender("c/none.gpg", 0, 1))


def test_closing_the_store_ends_the_sending_threads(store, large):
    async def scenario():
        server, client = tcp_pair()
        file = await store.open_sender("c/large.gpg", 0, large)
        sending = asyncio.ensure_future(file.send(server, 0, large, lambda count: None))
        await asyncio.sleep(0.3)
        await store.close()  # the server stopping
        with pytest.raises(StorageError, match="the store is closing"):
            await asyncio.wait_for(sending, SEND_WAKE_MS / 1000 + 1)
        file.close()
        server.close()
        client.close()

    asyncio.run(scenario())


def test_past_the_bound_downloads_are_streamed_instead(store, data):
    async def scenario():
        files = [await store.open_sender("c/one.gpg", 0, len(data)) for _ in range(SENDING_THREADS)]
        beyond = await store.open_sender("c/one.gpg", 0, len(data))
        files.pop().close()
        again = await store.open_sender("c/one.gpg", 0, len(data))
        for file in [*files, again]:
            file.close()
        return beyond, again

    beyond, again = asyncio.run(scenario())
    assert beyond is None and again is not None


def test_a_send_cancelled_before_it_has_a_thread_never_starts(store, data):
    """When every transfer thread is busy, a download waits for one; cancelled meanwhile, it gives back its
    descriptors at once instead of waiting for a thread to start only to stop."""
    busy = threading.Event()
    transfers = ThreadPoolExecutor(max_workers=1)
    transfers.submit(busy.wait, 30)

    async def scenario():
        server, client = tcp_pair()
        fd = store.backend.open_file("c/one.gpg")
        file = LocalFile("c/one.gpg", fd, transfers, threading.Event(), "the store", lambda: None)
        sending = asyncio.ensure_future(file.send(server, 0, len(data), lambda count: None))
        await asyncio.sleep(0.1)
        return await cancelled(sending, file, server, client)

    fds = open_fds()
    try:
        assert asyncio.run(scenario()) < 0.5
        assert open_fds() == fds
    finally:
        busy.set()
        transfers.shutdown()


# --- a store's answer relayed by splice (S3 and Azure over plain HTTP) ---------------------------------------------

def relay(store_end, prefix: bytes, count: int, timeout: float = 5.0):
    """relay_range from ``store_end`` (the store's connection) to a fresh client connection, read by a thread: (the
    result or the exception, the bytes the client received, the progress counted)."""
    server, client = tcp_pair()
    received, counted = [], []
    reader = threading.Thread(target=lambda: received.append(receive(client, count)), daemon=True)
    reader.start()
    try:
        outcome = relay_range(store_end.fileno(), prefix, count, server.fileno(), timeout, lambda: False,
                              counted.append)
    except Exception as exc:
        outcome = exc
    server.close()
    reader.join()
    client.close()
    return outcome, received[0], sum(counted)


def test_a_store_answer_is_relayed_whole_after_its_first_bytes(large):
    body = os.urandom(large)
    fds = open_fds()
    store_end, store = tcp_pair()
    writer = threading.Thread(target=store.sendall, args=(body[1000:],))
    writer.start()
    outcome, received, counted = relay(store_end, body[:1000], len(body))
    writer.join()
    store.close()
    store_end.close()
    assert outcome == counted == len(body) and received == body
    assert open_fds() == fds  # the pipe is closed


def test_a_store_answer_that_ends_early_is_an_eof_not_the_clients_fault():
    store_end, store = tcp_pair()
    store.sendall(b"x" * 100_000)
    store.close()
    outcome, received, _ = relay(store_end, b"", 200_000)
    store_end.close()
    assert isinstance(outcome, EOFError) and "100000 bytes early" in str(outcome)
    assert received == b"x" * 100_000


def test_a_store_that_resets_is_its_failure_not_the_clients():
    store_end, store = tcp_pair()
    store.sendall(b"x" * 1000)
    store.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.1)
    store.close()  # a reset
    outcome, _, _ = relay(store_end, b"", 200_000)
    store_end.close()
    assert isinstance(outcome, (OSError, EOFError)) and not isinstance(outcome, ConnectionError), repr(outcome)


def test_a_silent_store_is_given_up_after_its_timeout():
    store_end, store = tcp_pair()
    store.sendall(b"x" * 1000)
    began = time.monotonic()
    outcome, received, _ = relay(store_end, b"", 200_000, timeout=0.5)
    waited = time.monotonic() - began
    store.close()
    store_end.close()
    assert isinstance(outcome, TimeoutError) and received == b"x" * 1000
    assert 0.5 <= waited < 0.5 + SEND_WAKE_MS / 1000 + 0.5
