"""Objects in an S3 store (AWS S3 and S3-compatible servers such as MinIO) or Azure Blob Storage through
apache-libcloud.

A streamed write is written in parts (``_write_in_parts``): an S3 multipart upload, or on Azure a block blob whose
block list is committed at the end (storage/azure.py). The object appears only when the upload is completed or the
list committed; any failure, the stream's included, aborts it, so a failed upload leaves nothing visible. Every
method blocks and runs on the store's thread pool.
"""

import base64
import hashlib
import logging
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

from libcloud.common.types import InvalidCredsError
from libcloud.storage.base import Container
from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

from backup_repository.storage.backend import Chunk, RelaysAnswers
from backup_repository.storage.sendfile import RelaySource
from backup_repository.storage.urls import StorageConfigError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: Multipart writes (S3 parts, Azure blocks): an upload sends one part at a time, and up to PARTS_IN_FLIGHT at once
#: while extra slots (EXTRA_PARTS, shared by all uploads) are free and those in flight hold at most IN_FLIGHT_BYTES
#: (one stream gains the overlap; many streams overlap each other already, and memory stays bounded); the threads
#: that send them.
PARTS_IN_FLIGHT = 3
EXTRA_PARTS = 4
PART_THREADS = 64
IN_FLIGHT_BYTES = 48 << 20


@dataclass(frozen=True)
class PartPlan:
    """How a multipart write cuts a stream: part n holds at least ``size(n)`` bytes (the last may hold fewer), parts
    growing from ``first``, doubling every ``per_size`` parts up to ``largest``; the store takes at most ``most``."""

    first: int
    per_size: int
    largest: int
    most: int

    def size(self, number: int) -> int:
        return min(self.first << ((number - 1) // self.per_size), self.largest)

    @property
    def capacity(self) -> int:
        """The bytes the store's ``most`` parts hold."""
        return sum(self.size(number) for number in range(1, self.most + 1))


#: S3: 10,000 parts of 5 MiB (its least but for the last) for the first 4.9 GiB, then larger: one upload may reach
#: 448 GiB (5 MiB parts alone stopped at 48.8 GiB).
S3_PARTS = PartPlan(first=5 << 20, per_size=1_000, largest=64 << 20, most=10_000)
#: Azure: 50,000 blocks of 4 MiB for the first 19.5 GiB, then larger: one blob may reach 2.1 TiB (4 MiB blocks alone,
#: libcloud's, stopped at 195 GiB; the service takes blocks of up to 100 MiB since its 2016-05-31 version).
AZURE_BLOCKS = PartPlan(first=4 << 20, per_size=5_000, largest=64 << 20, most=50_000)
#: How long a relayed answer may stay silent when the store's connection has no timeout of its own (seconds).
STORE_SILENCE = 60.0
#: The S3 XML namespace of a PutObjectRetention body.
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


def _lock_date(moment: datetime) -> str:
    """An Object Lock retain-until date: ISO 8601 in UTC, in whole seconds, rounded down — so that the store's lock
    never outlasts the server's own floor (which counts from the version's registration, a little later) and
    rotation can delete a version as soon as the server allows it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text) -> float:
    """Store timestamps as epoch seconds: S3's ISO 8601 (``2026-11-27T10:00:00.000Z``) or Azure's HTTP date
    (``Fri, 27 Nov 2026 10:00:00 GMT``); 0 when unreadable (treated as old)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(str(text)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _is_s3(driver) -> bool:
    from libcloud.storage.drivers.s3 import BaseS3StorageDriver

    return isinstance(driver, BaseS3StorageDriver)


def _parts(chunks, size: Callable[[int], int]):
    """The chunks grouped into parts, part n of at least ``size(n)`` bytes (the last one may be smaller; an empty
    stream is one empty part, as S3 needs one): ``(pieces, length)``, the pieces as they came, never joined."""
    held, count, number = [], 0, 1
    for chunk in chunks:
        held.append(chunk)
        count += len(chunk)
        if count >= size(number):
            yield held, count
            held, count, number = [], 0, number + 1
    if held or number == 1:
        yield held, count


class PartBody:
    """A part's body: its pieces sent one after the other (no copy joins them), with a length, so that the request
    carries a Content-Length. Being an iterator, libcloud's SigV4 signer sends it as ``UNSIGNED-PAYLOAD`` instead of
    hashing the part twice with SHA-256 (the store then hashes it a third time to check): the object's own
    SHA-256 is taken once, as it arrives, and recorded (docs/performance.md#s3)."""

    def __init__(self, pieces: list, length: int):
        self._pieces = iter(pieces)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._pieces)


class CloudBackend(RelaysAnswers):
    """``make_driver()`` builds a libcloud driver for the store. Each thread gets a driver of its own: a driver and
    its HTTP connection are not safe to share between threads (shared, concurrent calls were seen to answer with
    another call's response: an empty body, a wrong size, a signature refused).

    ``object_lock`` (S3 only: ``governance`` or ``compliance``, from ``objectLock=`` in the storage URL): objects
    written with a retain-until date carry that S3 Object Lock retention, and a deletion removes the object's
    version itself (docs/configuration.md#s3-object-lock)."""

    def __init__(self, make_driver: Callable, container_name: str, object_lock: Optional[str] = None):
        self._make_driver = make_driver
        self._local = threading.local()  # this thread's driver and container
        self._container_name = container_name
        self._checked = False
        self._lock_mode = object_lock.upper() if object_lock else None
        self._lock_checked = False
        # multipart writes (S3 parts, Azure blocks): parts in flight on part threads (created when first needed)
        self._parts_pool: Optional[ThreadPoolExecutor] = None
        self._part_threads_lock = threading.Lock()
        self._extra = threading.BoundedSemaphore(EXTRA_PARTS)

    @property
    def _driver(self):
        driver = getattr(self._local, "driver", None)
        if driver is None:
            driver = self._local.driver = self._make_driver()
        return driver

    def check(self) -> None:
        """Raise when the bucket cannot be reached (the message names the bucket), or when objectLock= asks for a
        lock the bucket cannot keep (StorageConfigError: a start-up refusal, not an outage)."""
        try:
            self._local.container = self._driver.get_container(self._container_name)
        except ContainerDoesNotExistError:
            raise LookupError(f"the bucket {self._container_name!r} does not exist") from None
        self._checked = True
        if self._lock_mode and not self._lock_checked:
            self._check_object_lock(self._lock_mode)
            self._lock_checked = True

    def _check_object_lock(self, mode: str) -> None:
        try:
            response = self._driver.connection.request(f"/{self._container_name}", params={"object-lock": ""})
        except InvalidCredsError:
            raise StorageConfigError(
                f"the storage credentials may not read the Object Lock configuration of the bucket "
                f"{self._container_name!r} (s3:GetBucketObjectLockConfiguration), which objectLock= needs; see "
                "docs/configuration.md#s3-object-lock for the permissions") from None
        enabled = response.status == 200 and "<ObjectLockEnabled>Enabled</ObjectLockEnabled>" in (response.body or "")
        if not enabled:
            raise StorageConfigError(
                f"the bucket {self._container_name!r} does not have S3 Object Lock enabled, but the storage URL asks "
                f"for objectLock={mode.lower()}: create the bucket with Object Lock enabled (it can only "
                "be turned on for a bucket with versioning; see docs/configuration.md#s3-object-lock), or remove "
                "objectLock from --storage-url")

    def _bucket(self):
        """This thread's handle of the bucket (its driver's), checked once per process."""
        container = getattr(self._local, "container", None)
        if container is None:
            if not self._checked:
                self.check()
                return self._local.container
            container = self._local.container = Container(self._container_name, {}, self._driver)
        return container

    # --- writing --------------------------------------------------------------------------------
    def write_stream(self, name: str, chunks: Iterable[Chunk], check_size: Optional[Callable[[int], object]] = None,
                     retain_until: Optional[datetime] = None) -> int:
        """Stream the chunks into ``name``; when ``check_size(stored_bytes)`` refuses, the object is deleted.

        With objectLock= and ``retain_until``, the multipart upload is created with the lock's mode and date, so
        that the object is protected from the moment it exists; the retention is then read back, and set on the
        object's version when the store did not take it from the upload (some S3-compatible servers ignore it on
        multipart uploads). An object whose retention cannot be confirmed is not kept."""
        headers = None
        if self._lock_mode and retain_until is not None:
            headers = {"x-amz-object-lock-mode": self._lock_mode,
                       "x-amz-object-lock-retain-until-date": _lock_date(retain_until)}
        write = S3Upload(self, name, headers) if _is_s3(self._driver) else AzureUpload(self, name)
        self._write_in_parts(write, chunks)
        size = self.size(name)
        if size is None:
            raise IOError(f"the store does not show {name} after the upload completed")
        if check_size is not None:
            try:
                check_size(size)
            except BaseException:
                self.delete(name)
                raise
        if headers is not None:
            try:
                self._ensure_retention(name, headers["x-amz-object-lock-retain-until-date"])
            except BaseException:
                self.delete(name)
                raise
        return size

    def _write_in_parts(self, write: "PartedWrite", chunks: Iterable[Chunk]) -> None:
        """A multipart write (an S3 multipart upload, an Azure block list) whose parts go up several at a time while
        shared extra slots are free, each on a connection of its own (libcloud's own loops send one part after the
        other, so the store's work on a part and the sending of the next never overlapped: docs/performance.md#s3).
        Any failure, or the channel's abort, aborts the write: nothing shows."""
        name, plan = write.name, write.plan
        write.begin()
        done: list = []
        in_flight: list[tuple[Future, int]] = []  # (a part being sent, its length)
        failures: list[BaseException] = []
        stop_reading = getattr(chunks, "abort", None)  # the upload's Channel: a failed part ends its reading at once

        def failed(future):
            if not future.cancelled() and future.exception() is not None:
                failures.append(future.exception())
                if stop_reading is not None:
                    stop_reading()

        try:
            for number, (pieces, length) in enumerate(_parts(chunks, plan.size), start=1):
                if number > plan.most:
                    raise IOError(f"{name} is larger than {write.kind} can hold ({plan.most} parts, "
                                  f"{plan.capacity >> 30} GiB)")
                # wait for the oldest part unless this one may go alongside those in flight (few enough, small
                # enough, and a shared extra slot free)
                while in_flight and (len(in_flight) >= PARTS_IN_FLIGHT
                                     or sum(size for _, size in in_flight) + length > IN_FLIGHT_BYTES
                                     or not self._extra.acquire(blocking=False)):
                    done.append(in_flight.pop(0)[0].result())
                extra = bool(in_flight)
                future = self._part_threads().submit(write.put, number, pieces, length)
                if extra:
                    future.add_done_callback(lambda _: self._extra.release())
                future.add_done_callback(failed)
                in_flight.append((future, length))
            done += [future.result() for future, _ in in_flight]
            in_flight = []
            write.commit(done)
        except BaseException:
            for future, _ in in_flight:
                future.cancel()
            for future, _ in in_flight:
                try:
                    future.result()
                except BaseException:
                    pass
            write.abort()
            if failures:  # the part's failure, not the stop of the reading it caused
                raise failures[0] from None
            raise

    def _part_threads(self) -> ThreadPoolExecutor:
        with self._part_threads_lock:
            if self._parts_pool is None:
                self._parts_pool = ThreadPoolExecutor(max_workers=PART_THREADS, thread_name_prefix="part")
            return self._parts_pool

    def _delete_staged(self, name: str) -> bool:
        """Azure: drop the blocks of an upload that did not commit (S3: the write aborted its multipart upload
        already). Nothing else owns the name of an upload in progress, so this deletes nobody else's object."""
        delete_staged = getattr(self._driver, "ex_delete_staged", None)
        if delete_staged is None:
            return False
        try:
            return delete_staged(self._bucket(), name)
        except Exception as exc:  # the store will drop them on its own (Azure: after a week)
            log.warning("cannot drop the staged blocks of %s: %s", name, " ".join(str(exc).split()))
            return False

    def _head(self, name: str) -> dict:
        response = self._driver.connection.request(self._driver._get_object_path(self._bucket(), name),
                                                   method="HEAD")
        if response.status == 404:
            raise ObjectDoesNotExistError(value=None, driver=self._driver, object_name=name)
        return {key.lower(): value for key, value in response.headers.items()}

    def _retention(self, name: str) -> tuple:
        """(mode, retain-until date text, version id) of the object's current version, as the store shows them."""
        headers = self._head(name)
        return (headers.get("x-amz-object-lock-mode"), headers.get("x-amz-object-lock-retain-until-date"),
                headers.get("x-amz-version-id"))

    def _ensure_retention(self, name: str, until: str):
        mode, shown, version_id = self._retention(name)
        if mode == self._lock_mode and shown and _epoch(shown) >= _epoch(until):
            return
        body = (f'<Retention xmlns="{S3_NAMESPACE}"><Mode>{self._lock_mode}</Mode>'
                f"<RetainUntilDate>{until}</RetainUntilDate></Retention>").encode()
        params = {"retention": ""}
        if version_id:
            params["versionId"] = version_id
        self._driver.connection.request(
            self._driver._get_object_path(self._bucket(), name), method="PUT", params=params, data=body,
            headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                     "Content-Type": "application/xml"})
        mode, shown, _ = self._retention(name)
        if mode != self._lock_mode or not shown or _epoch(shown) < _epoch(until):
            raise IOError(f"the store did not keep the Object Lock retention of {name} "
                          f"({self._lock_mode} until {until}); the object is not kept")

    def put_bytes(self, name: str, data: bytes) -> None:
        self._driver.upload_object_via_stream(iter([data]), self._bucket(), name)

    # --- reading --------------------------------------------------------------------------------
    def _object(self, name: str):
        return self._driver.get_object(self._container_name, name)

    def size(self, name: str) -> Optional[int]:
        try:
            return int(self._object(name).size)
        except ObjectDoesNotExistError:
            return None

    def read_range(self, name: str, start: int = 0, end: Optional[int] = None,
                   chunk_size: int = CHUNK) -> Generator[bytes, None, None]:
        obj = self._object(name)
        if start == 0 and end is None:
            stream = self._driver.download_object_as_stream(obj, chunk_size=chunk_size)
        else:
            stream = self._driver.download_object_range_as_stream(obj, start, end, chunk_size=chunk_size)
        for data in stream:
            if data:
                yield data

    def open_relay(self, name: str, start: int, end: int) -> Optional[RelaySource]:
        """The store's answer to a GET of the bytes ``[start, end)`` of ``name``, its headers read, for
        storage/sendfile.py to relay by splice; None when its body cannot be relayed as it comes over the wire
        (TLS, a chunked or encoded answer): the caller streams through ``read_range`` then. ObjectDoesNotExistError
        when there is no such object."""
        driver = self._driver
        connection = driver.connection
        if connection.secure:  # TLS: the bytes on the wire are not the object's (asked before any request is made)
            return None
        # S3 and Azure both take the standard Range header; the answer holds its connection until it is closed
        connection.request(driver._get_object_path(self._bucket(), name), method="GET", raw=True, stream=True,
                           headers={"Range": f"bytes={start}-{end - 1}"})
        response = connection.connection.getresponse()  # this thread's driver: the answer just asked for
        try:
            source = self._relay_source(name, response, start, end)
        except BaseException:
            response.close()
            raise
        if source is None:
            response.close()
        return source

    def _relay_source(self, name: str, response, start: int, end: int) -> Optional[RelaySource]:
        if response.status_code == 404:
            raise ObjectDoesNotExistError(value=None, driver=self._driver, object_name=name)
        if response.status_code != 206:
            raise IOError(f"the store answered HTTP {response.status_code} to a read of {name}")
        raw = response.raw  # urllib3's response; its http.client response holds the socket's buffered reader
        wire, connection = getattr(raw, "_fp", None), getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if (sock is None or wire is None or isinstance(sock, ssl.SSLSocket) or getattr(wire, "chunked", True)
                or response.headers.get("Content-Encoding", "identity") != "identity"):
            return None
        if wire.length != end - start:
            raise IOError(f"the store answered {wire.length} bytes for the {end - start} asked of {name}")
        # the body's first bytes may have come with the headers into the reader's buffer: taken from there
        prefix = wire.fp.peek(1)[:end - start]
        wire.fp.read(len(prefix))
        timeout = sock.gettimeout()
        return RelaySource(sock, start, end, prefix, timeout if timeout else STORE_SILENCE, response.close)

    def get_bytes(self, name: str) -> bytes:
        return b"".join(self.read_range(name))

    # --- deleting -------------------------------------------------------------------------------
    def delete(self, name: str) -> bool:
        if self._lock_mode:
            return self._delete_version(name)
        try:
            obj = self._object(name)
        except ObjectDoesNotExistError:
            return False
        return bool(self._driver.delete_object(obj))

    def _delete_version(self, name: str) -> bool:
        """With Object Lock (a versioned bucket), a plain DELETE only hides an object behind a delete marker: the
        object's version itself is deleted, which frees its space at once and which the store refuses while the
        version's retention or a legal hold lasts. Refused (the store's clock is behind ours, the bucket's own
        default retention is longer, an operator's legal hold: AWS answers 403 AccessDenied, MinIO 400
        InvalidRequest), the object is hidden behind a delete marker instead; the bucket's lifecycle rule for
        noncurrent versions removes it once its retention has passed (docs/configuration.md#s3-object-lock)."""
        try:
            _, until, version_id = self._retention(name)
        except ObjectDoesNotExistError:
            return False
        path = self._driver._get_object_path(self._bucket(), name)
        if version_id:
            try:
                response = self._driver.connection.request(path, method="DELETE", params={"versionId": version_id})
                status = response.status
            except InvalidCredsError:
                status = 403
            if status in (200, 204):
                return True
            log.warning("the store refused to delete %s (version %s, retained until %s; status %d); hidden behind a "
                        "delete marker instead, the bucket's lifecycle rule removes it later", name, version_id,
                        until or "-", status)
        response = self._driver.connection.request(path, method="DELETE")
        return response.status in (200, 204)

    def objects(self) -> list[tuple[str, float]]:
        return [(obj.name, _epoch(obj.extra.get("last_modified")))
                for obj in self._driver.iterate_container_objects(self._bucket())
                if not obj.name.startswith(".health-")]

    def remove_leftovers(self, name: str, older_than: float) -> int:
        """Remove ``name`` and abort its multipart uploads begun before ``older_than`` (epoch seconds); on Azure, drop
        the blocks staged under the name (whatever their age: the service does not tell it)."""
        removed = 1 if self.delete(name) else 0
        if self._delete_staged(name):  # Azure: an upload cut short by a crash left uncommitted blocks
            removed += 1
        iterate = getattr(self._driver, "ex_iterate_multipart_uploads", None)
        if iterate is not None:  # S3: an upload cut short by a crash is an unfinished multipart upload
            for upload in iterate(self._bucket(), prefix=name):
                if upload.key == name and _epoch(upload.created_at) < older_than:
                    self._driver._abort_multipart(self._bucket(), upload.key, upload.id)
                    removed += 1
        return removed

    def sweep_temporary(self, older_than: float) -> list[str]:
        return []  # unfinished multipart uploads are found through the pending-upload records


class PartedWrite(ABC):
    """One object written in parts by ``CloudBackend._write_in_parts``: ``begin`` and ``commit``/``abort`` on the
    writing thread, ``put`` on part threads (each with its own driver: ``backend._driver`` is per thread). A part's
    body is sent without a hash of its content: the store's TCP or TLS connection and the object's SHA-256, taken
    once as it arrives and recorded, guard the bytes (docs/performance.md#s3)."""

    kind = ""
    plan: PartPlan

    def __init__(self, backend: CloudBackend, name: str):
        self.backend = backend
        self.name = name

    def begin(self) -> None:
        pass

    @abstractmethod
    def put(self, number: int, pieces: list, length: int):
        """Send part ``number`` (from a part thread); what ``commit`` needs of it."""

    @abstractmethod
    def commit(self, done: list) -> None:
        """Make the object of the parts ``done`` (what ``put`` returned, in order) visible."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what the write staged: nothing of it shows."""


class S3Upload(PartedWrite):
    """An S3 multipart upload; ``headers`` (Object Lock's) go on its creation."""

    kind = "an S3 multipart upload"
    plan = S3_PARTS

    def __init__(self, backend: CloudBackend, name: str, headers: Optional[dict]):
        super().__init__(backend, name)
        self.headers = headers
        self.upload_id = ""

    def begin(self) -> None:
        backend = self.backend
        self.upload_id = backend._driver._initiate_multipart(
            backend._bucket(), self.name,
            headers={"Content-Type": "application/octet-stream", **(self.headers or {})})

    def put(self, number: int, pieces: list, length: int) -> tuple:
        """(number, ETag). Under Object Lock the part carries its Content-MD5, which AWS asks of every write to a
        bucket with retention."""
        driver = self.backend._driver
        headers = {"Content-Length": str(length)}
        if self.backend._lock_mode:
            md5 = hashlib.md5()
            for piece in pieces:
                md5.update(piece)
            headers["Content-MD5"] = base64.b64encode(md5.digest()).decode()
        # an empty part (an empty object) goes as bytes: a body of no length would be sent chunked
        body = PartBody(pieces, length) if length else b""
        response = driver.connection.request(
            driver._get_object_path(self.backend._bucket(), self.name), method="PUT", data=body,
            params={"uploadId": self.upload_id, "partNumber": number}, headers=headers)
        if response.status != 200:
            raise IOError(f"the store refused part {number} of {self.name}: HTTP {response.status}")
        return number, response.headers["etag"].replace('"', "")

    def commit(self, done: list) -> None:
        self.backend._driver._commit_multipart(self.backend._bucket(), self.name, self.upload_id, done)

    def abort(self) -> None:
        self.backend._driver._abort_multipart(self.backend._bucket(), self.name, self.upload_id)


class AzureUpload(PartedWrite):
    """A block blob: blocks staged (Put Block), then the block list committed (Put Block List); the blob appears
    only then. Abort drops the staged blocks (storage/azure.py)."""

    kind = "an Azure block blob"
    plan = AZURE_BLOCKS

    def put(self, number: int, pieces: list, length: int) -> Optional[str]:
        """The block's id; None for the empty part of an empty stream (a block holds at least a byte: an empty blob
        is an empty block list)."""
        if not length:
            return None
        return self.backend._driver.ex_put_block(self.backend._bucket(), self.name, number,
                                                 PartBody(pieces, length), length)

    def commit(self, done: list) -> None:
        self.backend._driver.ex_commit_blocks(self.backend._bucket(), self.name,
                                              [block for block in done if block is not None])

    def abort(self) -> None:
        self.backend._delete_staged(self.name)
