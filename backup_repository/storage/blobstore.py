"""The blob store: objects named ``{collectionId}/{filename}`` in one bucket or directory
(docs/configuration.md#storage-urls).

Three backends share one small interface (storage/backend.py): ``LocalBackend`` (a local directory),
``CloudBackend`` (S3 and Azure via apache-libcloud) and ``GcsBackend`` (Google Cloud Storage via Google's client
library). Their calls block, so they never run on the event loop: short operations use a small thread pool, and
each streamed transfer gets a thread of its own pool so that long uploads and downloads cannot starve health checks
or deletions.

A streamed write goes through a ``Channel``: the event loop hands chunks over as they arrive from the socket,
the transfer thread hashes and writes them, and when the thread falls behind the channel makes the event loop
wait (back-pressure), so memory stays flat whatever the size of the object.

A download goes to the client's socket kernel to kernel in a transfer thread where it can (``open_sender`` ->
storage/sendfile.py): from a local directory's file by ``sendfile``, from an S3 or Azure store's plain-HTTP answer by
``splice``; otherwise (GCS, a store behind TLS) it streams through ``read``.
"""

import asyncio
import hashlib
import html
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from backup_repository.failures import StorageError
from backup_repository.storage.backend import Backend, Chunk, OpensFiles, RelaysAnswers
from backup_repository.storage.local import LocalBackend
from backup_repository.storage.sendfile import CAN_SPLICE, KernelSender, LocalFile, Relay
from backup_repository.storage.urls import StorageConfigError, StorageLocation, make_driver, parse_storage_url

log = logging.getLogger(__name__)

#: Chunks smaller than this are coalesced before they are handed to a transfer thread (fewer hand-offs and
#: writes); larger ones go as they are, without a copy.
PIECE = 64 << 10
#: How many bytes an upload may have in flight between the socket and the store before reading pauses.
HIGH_WATER = 2 << 20
#: Upper bound of concurrent streamed transfers per process; more wait for a free thread.
TRANSFER_THREADS = 64
#: Downloads sent kernel to kernel hold a transfer thread until the client has everything; past this many at once, more
#: are streamed through ``read`` (a thread per chunk read only), so that slow readers leave threads to uploads.
SENDING_THREADS = TRANSFER_THREADS // 2


class BlobStore:
    def __init__(self, location: StorageLocation, backend: Backend, io_threads: int = 8):
        self.location = location
        self.backend = backend
        # how a download can be sent kernel to kernel (open_sender): asked once, here
        self._files: Optional[OpensFiles] = backend if isinstance(backend, OpensFiles) else None
        self._relays: Optional[RelaysAnswers] = (backend if CAN_SPLICE and isinstance(backend, RelaysAnswers)
                                                 else None)
        self._executor = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="storage")
        self._transfers = ThreadPoolExecutor(max_workers=TRANSFER_THREADS, thread_name_prefix="transfer")
        # sha256 of uploads beside their writes (Channel); more threads than cores would only queue
        self._hashing = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="hash")
        self._closing = threading.Event()  # set by close(): sending threads stop at their next wake-up
        self._sending = 0  # KernelSenders open (changed on the event loop only)

    @classmethod
    def from_url(cls, url: str, use_google_cloud: bool = False, create_local: bool = False) -> "BlobStore":
        """Build the store for ``url``; ``create_local`` creates a missing local directory (embedded default)."""
        location = parse_storage_url(url, use_google_cloud)
        if location.scheme == "file":
            if create_local:
                os.makedirs(location.bucket, mode=0o700, exist_ok=True)
            if not os.path.isdir(location.bucket):
                raise StorageConfigError(
                    f"the storage directory {location.bucket} does not exist; create it or fix --storage-url"
                )
            return cls(location, LocalBackend(location.bucket))
        if location.scheme == "gs":
            from backup_repository.storage import gcs  # Google's client library only when used

            gcs.make_client(os.environ)  # missing credentials are refused here, at start-up
            return cls(location, gcs.GcsBackend(lambda: gcs.make_client(os.environ), location.bucket))
        from backup_repository.storage.cloud import CloudBackend  # libcloud (and requests) only when used

        _, container = make_driver(location)  # a wrong URL or missing credentials are refused here, at start-up
        backend = CloudBackend(lambda: make_driver(location)[0], container, object_lock=location.object_lock)
        return cls(location, backend)

    def describe(self) -> str:
        return self.location.describe()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except StorageError:
            raise
        except Exception as exc:  # libcloud, network and OS errors alike
            raise StorageError(f"{self.describe()}: {_reason(exc)}") from exc

    async def open(self) -> None:
        """Check at start-up that the bucket or directory is reachable."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.backend.check)
        except StorageConfigError:  # reachable, but not as configured (objectLock on a bucket without it)
            raise
        except Exception as exc:
            raise StorageError(f"cannot reach {self.describe()}: {_reason(exc)}") from exc

    async def close(self) -> None:
        self._closing.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._transfers.shutdown(wait=False, cancel_futures=True)
        self._hashing.shutdown(wait=False, cancel_futures=True)

    # --- small operations -----------------------------------------------------------------------
    async def size(self, name: str) -> Optional[int]:
        return await self._run(self.backend.size, name)

    async def delete(self, name: str) -> bool:
        return await self._run(self.backend.delete, name)

    async def remove(self, name: str) -> Optional[str]:
        """Delete ``name`` and confirm it is gone: None when the store no longer shows it (deleted now, or absent
        already), else why it is still there — the store refused the deletion (an Object Lock, a permission) or
        could not be asked. A deletion is never taken as done on the store's word alone."""
        refusal = None
        try:
            if not await self.delete(name):
                refusal = "the store did not delete it"
        except StorageError as exc:
            refusal = str(exc)
        try:
            if await self.size(name) is None:
                return None
        except StorageError as exc:
            return refusal or str(exc)
        return refusal or "the store still shows it after deleting it"

    async def objects(self) -> list[tuple[str, float]]:
        """(name, modified epoch seconds) of every object in the store, this server's probes and temporary files
        left out."""
        return await self._run(self.backend.objects)

    async def put_bytes(self, name: str, data: bytes) -> None:
        await self._run(self.backend.put_bytes, name, data)

    async def get_bytes(self, name: str) -> bytes:
        return await self._run(self.backend.get_bytes, name)

    async def remove_leftovers(self, name: str, older_than: float) -> int:
        return await self._run(self.backend.remove_leftovers, name, older_than)

    async def sweep_temporary(self, older_than: float) -> list[str]:
        return await self._run(self.backend.sweep_temporary, older_than)


    # --- streams --------------------------------------------------------------------------------
    def writer(self, name: str, check_size: Optional[Callable[[int], object]] = None,
               retain_until: Optional[datetime] = None) -> "ObjectWriter":
        """Start writing ``name``; it becomes visible only when ``ObjectWriter.close()`` succeeds. With
        ``retain_until`` (a collection's minimumRetention) and an S3 store with objectLock=, the object is written
        under S3 Object Lock until then."""
        return ObjectWriter(self, name, check_size, retain_until)

    async def read(self, name: str, start: int = 0, end: Optional[int] = None) -> AsyncGenerator[bytes, None]:
        """Yield the bytes ``[start, end)`` of ``name``; the next chunk is read while the caller sends this one.

        Use with ``contextlib.aclosing`` so that an early exit (a client that went away) closes the object.
        """
        loop = asyncio.get_running_loop()
        chunks = self.backend.read_range(name, start, end)
        pending = loop.run_in_executor(self._transfers, next, chunks, None)
        try:
            while True:
                try:
                    chunk = await pending
                except Exception as exc:
                    raise StorageError(f"cannot read {name} from {self.describe()}: {_reason(exc)}") from exc
                if chunk is None:
                    return
                pending = loop.run_in_executor(self._transfers, next, chunks, None)
                yield chunk
        finally:
            if not pending.done():
                await asyncio.wait([pending])
            try:
                await loop.run_in_executor(self._transfers, chunks.close)
            except RuntimeError:  # the store is closing (server stopping): its threads are gone, close it here
                chunks.close()

    async def open_sender(self, name: str, start: int, end: int) -> Optional[KernelSender]:
        """The bytes ``[start, end)`` of ``name`` opened for sending kernel to kernel (``.send(sock, start, end,
        progress)``, then ``.close()``; storage/sendfile.py): a local store's file, or an S3 or Azure store's answer
        over plain HTTP. None to stream them with ``read`` instead: the store cannot (GCS, a store behind TLS, a
        system without splice), or SENDING_THREADS are sending already. The one place that decides how an object
        is sent."""
        files, relays = self._files, self._relays
        if (files is None and relays is None) or self._sending >= SENDING_THREADS:
            return None
        self._sending += 1
        loop = asyncio.get_running_loop()
        try:
            if files is not None:
                fd = await loop.run_in_executor(self._executor, files.open_file, name)
                return LocalFile(name, fd, self._transfers, self._closing, self.describe(), self._sender_closed)
            source = None if relays is None else await loop.run_in_executor(
                self._executor, relays.open_relay, name, start, end)
        except Exception as exc:  # a missing object, permissions, the store away or closing
            self._sender_closed()
            raise StorageError(f"cannot read {name} from {self.describe()}: {_reason(exc)}") from exc
        if source is None:
            self._sender_closed()
            return None
        return Relay(name, source, self._transfers, self._closing, self.describe(), self._sender_closed)

    def _sender_closed(self) -> None:
        self._sending -= 1

    async def health_check(self, timeout: float) -> None:
        """Write, read back and delete a ``.health-<nanoseconds>`` object within ``timeout`` seconds."""
        name = f".health-{time.time_ns()}"
        payload = f"health check {name}".encode()

        async def round_trip():
            await self.open()
            await self.put_bytes(name, payload)
            try:
                if await self.get_bytes(name) != payload:
                    raise StorageError("the object read back differs from the one written")
            finally:
                await self.delete(name)

        log.debug("storage check: a round trip through %s", name)
        try:
            await asyncio.wait_for(round_trip(), timeout)
        except asyncio.TimeoutError:
            raise StorageError(f"no answer from {self.describe()} within {timeout:g}s") from None


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    sha256: str


class Aborted(Exception):
    """Raised inside a transfer thread when the upload was abandoned."""


class ObjectWriter:
    """One object being streamed into the store by a transfer thread."""

    def __init__(self, store: BlobStore, name: str, check_size: Optional[Callable[[int], object]] = None,
                 retain_until: Optional[datetime] = None):
        self.name = name
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._channel = Channel(self._loop, HIGH_WATER, store._hashing)
        self._pending = bytearray()
        self._settled = False  # close() or abort() was called: a failure is theirs to report
        self._result = self._loop.run_in_executor(
            store._transfers, store.backend.write_stream, name, self._channel, check_size, retain_until
        )
        # a thread that stopped early (the store failed) must not leave the event loop waiting for room
        self._result.add_done_callback(lambda _: self._channel.abort())

    def write(self, data: Chunk | memoryview) -> Optional[asyncio.Future]:
        """Queue ``data``; returns a future to await when the store is behind (back-pressure), else None.

        Nothing is done per byte here: the transfer thread hashes each piece as it takes it (hashlib lets go of the
        GIL) and writes it, while the event loop reads and checks the next ones.
        """
        if self._result.done():  # before close(), a finished thread means the store failed: stop at once
            self._raise_failure()
        if len(data) < PIECE:
            self._pending += data
            if len(self._pending) < PIECE:
                return None
            data, self._pending = bytes(self._pending), bytearray()
        elif self._pending:  # what was held back goes first
            self._channel.put(bytes(self._pending))
            self._pending = bytearray()
        # bytes, or a bytearray the caller hands over (a body piece received into a buffer of its own)
        return self._channel.put(data if isinstance(data, (bytes, bytearray)) else bytes(data))

    async def close(self) -> StoredObject:
        """Flush, complete the object and return its size and sha256; raise StorageError on any failure."""
        self._settled = True
        if self._pending:
            waiting = self._channel.put(bytes(self._pending))
            self._pending = bytearray()
            if waiting is not None:
                await waiting
        self._channel.close()
        try:
            size = await self._result
        except Exception:
            self._raise_failure()
        return StoredObject(self.name, size, self._channel.sha256.hexdigest())

    def _raise_failure(self) -> None:
        exc = self._result.exception()
        raise StorageError(f"cannot store {self.name} in {self._store.describe()}: {_reason(exc)}") from exc

    def when_failed(self, callback: Callable[[StorageError], None]) -> None:
        """``callback(StorageError)``, on the event loop, when the store fails before ``close()`` or ``abort()``
        is called: the upload learns of it at once, not at the next piece of the body (a client may be between
        pieces, or done sending a body it has not finished)."""
        def done(result: asyncio.Future):
            if self._settled or result.cancelled() or result.exception() is None:
                return
            try:
                self._raise_failure()
            except StorageError as exc:
                callback(exc)

        self._result.add_done_callback(done)

    async def abort(self) -> None:
        """Abandon the object: the transfer thread stops and removes whatever it wrote."""
        self._settled = True
        self._pending = bytearray()
        self._channel.abort()
        try:
            await self._result
        except Aborted:
            pass
        except Exception as exc:  # the store failed as well; nothing more we can do here
            log.warning("while abandoning %s: %s", self.name, _reason(exc))


class Channel:
    """Chunks from the event loop to one consumer thread, with back-pressure towards the event loop.

    Every chunk the consumer takes is hashed (``sha256``) in a thread of the ``hashing`` pool while the consumer
    writes the chunk (hashlib and os.write both let go of the GIL, so they run on two cores), one
    chunk at a time so that the hash sees them in order; the consumer takes the next chunk only once the hash of
    the previous one is done, and the hash is complete when the iteration ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, high_water: int, hashing: ThreadPoolExecutor):
        self.sha256 = hashlib.sha256()
        self._hashing = hashing
        self._loop = loop
        self._high = high_water
        self._cond = threading.Condition()
        self._items: deque[Chunk] = deque()
        self._buffered = 0
        self._closed = False
        self._aborted = False
        # a future of the event loop, resolved when the consumer caught up
        self._waiter: Optional[asyncio.Future] = None

    # event loop side
    def put(self, data: Chunk) -> Optional[asyncio.Future]:
        with self._cond:
            if self._aborted:
                return None
            self._items.append(data)
            self._buffered += len(data)
            self._cond.notify()
            if self._buffered < self._high:
                return None
            self._waiter = self._loop.create_future()
            return self._waiter

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._buffered = 0
            self._cond.notify()
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)

    # consumer thread side
    def __iter__(self) -> Iterator[Chunk]:
        hashing: Optional[Future] = None  # the hash of the chunk taken before, running beside its write
        while True:
            with self._cond:
                while not self._items and not self._closed and not self._aborted:
                    self._cond.wait()
                if self._aborted:
                    raise Aborted("the upload was abandoned")
                if not self._items:
                    break
                data = self._items.popleft()
                self._buffered -= len(data)
                if self._waiter is not None and self._buffered <= self._high // 2:
                    self._wake()
            if hashing is not None:
                hashing.result()
            hashing = self._hashing.submit(self.sha256.update, data)
            yield data
        if hashing is not None:
            hashing.result()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


#: An S3 (or Azure) error body, as libcloud passes it on in its exception's text: ``<Code>`` and ``<Message>``.
_STORE_CODE = re.compile(r"<Code>([^<]*)</Code>")
_STORE_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def _reason(exc: Optional[BaseException]) -> str:
    """Why a store's call failed, in one line of at most 300 characters: the store's own error code and message
    when the text carries its XML error body (``AccessDenied: Access Denied.``), the exception's text otherwise."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    code = _STORE_CODE.search(text)
    if code:
        message = _STORE_MESSAGE.search(text)
        text = html.unescape(code[1] + (f": {message[1]}" if message else ""))
    return text[:300]
