"""Objects in Google Cloud Storage (``gs://bucket``) through Google's own client library (google-cloud-storage,
the JSON API).

Why not libcloud, as for S3: libcloud's Google Storage driver speaks the XML API, whose only tested server is
Google itself. Its driver takes no endpoint (``host``/``port`` land in the connection's ``auth_type`` and
``credential_file`` parameters), and the GCS emulator that the Go Cloud and Google client libraries test against
(fake-gcs-server) serves the JSON API fully but the XML API only in part (no ``PUT`` of an object, no ``HEAD`` of
a bucket); docs/configuration.md#google-cloud-storage says what was tried. The JSON client is the one Go Cloud's
gcsblob (the Go server's storage) uses, and it honours ``STORAGE_EMULATOR_HOST`` the same way.

A streamed write is a resumable upload sent in CHUNK_SIZE requests: the object appears only when the last
request finalizes it, and the size is checked before that request, so a refused or failed upload never shows;
an unfinished upload is cancelled (GCS forgets one left behind by a crash after a week, unbilled). A read is a
series of ranged requests pinned to the object's generation, so an object replaced meanwhile fails the read
instead of mixing two versions. Every method blocks and runs on the store's thread pool.
"""

import threading
from collections.abc import Generator, Iterable
from datetime import datetime
from typing import Callable, Optional

from backup_repository.storage.backend import Backend, Chunk
from backup_repository.storage.urls import StorageConfigError

#: The size of each request of a resumable upload and of each ranged read (a multiple of 256 KiB, as resumable
#: uploads require); one such buffer per transfer in flight.
CHUNK_SIZE = 8 << 20
#: Pieces handed to the caller of ``read_range``.
PIECE = 1 << 20
#: The variable of Google's client libraries that names an emulator (``host:port`` or ``http://host:port``).
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def emulator_endpoint(environ) -> Optional[str]:
    """The emulator's base URL from STORAGE_EMULATOR_HOST, or None. ``host:port`` means plain HTTP, as the Go
    client (and so Go Cloud) reads it; a URL with a scheme is taken as it is."""
    host = (environ.get(EMULATOR_VARIABLE) or "").strip().rstrip("/")
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def make_client(environ):
    """A google-cloud-storage Client: on the emulator of STORAGE_EMULATOR_HOST without credentials (as Google's
    clients and Go Cloud do), else with the service account key file named by GOOGLE_APPLICATION_CREDENTIALS.
    Missing or unreadable credentials raise StorageConfigError (a start-up refusal)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    endpoint = emulator_endpoint(environ)
    if endpoint is not None:
        return storage.Client(project=environ.get("GOOGLE_CLOUD_PROJECT") or "emulator",
                              credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))
    path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise StorageConfigError(
            "Google Cloud Storage needs GOOGLE_APPLICATION_CREDENTIALS naming a service account JSON key file "
            f"(or {EMULATOR_VARIABLE} naming an emulator)")
    try:
        return storage.Client.from_service_account_json(path)
    except (OSError, ValueError) as exc:
        raise StorageConfigError(f"cannot read GOOGLE_APPLICATION_CREDENTIALS file {path}: {exc}") from None


class GcsBackend(Backend):
    """``make_client()`` builds a client; each thread gets one of its own (as CloudBackend does with its drivers:
    an HTTP session is not shared between threads)."""

    def __init__(self, make_client: Callable, bucket_name: str):
        self._make_client = make_client
        self._local = threading.local()
        self._bucket_name = bucket_name
        self._checked = False

    def _bucket(self):
        bucket = getattr(self._local, "bucket", None)
        if bucket is None:
            bucket = self._local.bucket = self._make_client().bucket(self._bucket_name)
        return bucket

    def check(self) -> None:
        """Raise when the bucket cannot be reached (LookupError naming it when it does not exist)."""
        from google.api_core.exceptions import NotFound

        try:
            self._bucket().reload()
        except NotFound:
            raise LookupError(f"the bucket {self._bucket_name!r} does not exist") from None
        self._checked = True

    # --- writing --------------------------------------------------------------------------------
    def write_stream(self, name: str, chunks: Iterable[Chunk], check_size: Optional[Callable[[int], object]] = None,
                     retain_until: Optional[datetime] = None) -> int:
        """Stream the chunks into ``name`` as one resumable upload. ``check_size(size)`` runs before the upload is
        finalized: when it (or the chunk iterator, or the store) fails, the upload is cancelled and nothing is
        visible. ``retain_until`` is not kept (objectLock= is an option of s3:// only)."""
        if not self._checked:
            self.check()
        writer = self._bucket().blob(name).open("wb", chunk_size=CHUNK_SIZE, ignore_flush=True,
                                                content_type="application/octet-stream")
        size = 0
        try:
            for chunk in chunks:
                writer.write(chunk)
                size += len(chunk)
            if check_size is not None:
                check_size(size)
            writer.close()  # the last request: the object appears
        except BaseException:
            _cancel(writer)
            raise
        stored = self.size(name)
        if stored != size:
            raise IOError(f"the store shows {name} with {stored} bytes after an upload of {size}")
        return size

    def put_bytes(self, name: str, data: bytes) -> None:
        self._bucket().blob(name).upload_from_string(data, content_type="application/octet-stream")

    # --- reading --------------------------------------------------------------------------------
    def size(self, name: str) -> Optional[int]:
        blob = self._bucket().get_blob(name)
        return None if blob is None else int(blob.size)

    def read_range(self, name: str, start: int = 0, end: Optional[int] = None,
                   chunk_size: int = PIECE) -> Generator[bytes, None, None]:
        """Yield the bytes ``[start, end)`` of ``name``; FileNotFoundError when there is no such object."""
        blob = self._bucket().get_blob(name)
        if blob is None:
            raise FileNotFoundError(f"no object {name}")
        end = blob.size if end is None else min(end, blob.size)
        if start >= end:
            return
        reader = blob.open("rb", chunk_size=max(CHUNK_SIZE, chunk_size), if_generation_match=blob.generation)
        try:
            reader.seek(start)
            remaining = end - start
            while remaining > 0:
                data = reader.read(min(chunk_size, remaining))
                if not data:
                    raise IOError(f"{name} ended {remaining} bytes early")
                remaining -= len(data)
                yield data
        finally:
            reader.close()

    def get_bytes(self, name: str) -> bytes:
        return self._bucket().blob(name).download_as_bytes()

    # --- deleting -------------------------------------------------------------------------------
    def delete(self, name: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket().blob(name).delete()
        except NotFound:
            return False
        return True

    def objects(self) -> list[tuple[str, float]]:
        return [(blob.name, blob.updated.timestamp() if blob.updated else 0.0)
                for blob in self._bucket().client.list_blobs(self._bucket_name)
                if not blob.name.startswith(".health-")]

    def remove_leftovers(self, name: str, older_than: float) -> int:
        """Remove ``name``. An upload cut short by a crash is an unfinished resumable upload: GCS lists none and
        bills none, and forgets each a week after it began."""
        return 1 if self.delete(name) else 0

    def sweep_temporary(self, older_than: float) -> list[str]:
        return []  # unfinished uploads are invisible; their records name the objects to remove


def _cancel(writer):
    """Cancel an unfinished resumable upload; a failure to cancel is no failure of its own (GCS forgets it)."""
    try:
        writer.terminate()
    except Exception:  # noqa: BLE001 - the store is away: the upload expires there by itself
        pass
