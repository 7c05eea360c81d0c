"""Objects in an object store (S3 and S3-compatible servers, Google Cloud Storage) through apache-libcloud.

A streamed write is an S3 multipart upload: the object appears only when the upload is completed, and libcloud
aborts the multipart upload when the chunk iterator raises, so a failed upload leaves nothing visible.
Every method blocks and runs on the store's thread pool.
"""

from datetime import datetime, timezone

from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

CHUNK = 1 << 20


def _epoch(text) -> float:
    """S3 timestamps (``2026-11-27T10:00:00.000Z``) as epoch seconds; 0 when unreadable (treated as old)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return 0.0


class CloudBackend:
    def __init__(self, driver, container_name: str):
        self._driver = driver
        self._container_name = container_name
        self._container = None

    def check(self):
        """Raise when the bucket cannot be reached (the message names the bucket)."""
        try:
            self._container = self._driver.get_container(self._container_name)
        except ContainerDoesNotExistError:
            raise LookupError(f"the bucket {self._container_name!r} does not exist") from None

    def _bucket(self):
        if self._container is None:
            self.check()
        return self._container

    # --- writing --------------------------------------------------------------------------------
    def write_stream(self, name: str, chunks, check_size=None) -> int:
        """Stream the chunks into ``name``; when ``check_size(stored_bytes)`` refuses, the object is deleted."""
        self._driver.upload_object_via_stream(iter(chunks), self._bucket(), name)
        size = self.size(name)
        if size is None:
            raise IOError(f"the store does not show {name} after the upload completed")
        if check_size is not None:
            try:
                check_size(size)
            except BaseException:
                self.delete(name)
                raise
        return size

    def put_bytes(self, name: str, data: bytes):
        self._driver.upload_object_via_stream(iter([data]), self._bucket(), name)

    # --- reading --------------------------------------------------------------------------------
    def _object(self, name: str):
        return self._driver.get_object(self._container_name, name)

    def size(self, name: str):
        try:
            return int(self._object(name).size)
        except ObjectDoesNotExistError:
            return None

    def read_range(self, name: str, start: int = 0, end: int = None, chunk_size: int = CHUNK):
        obj = self._object(name)
        if start == 0 and end is None:
            stream = self._driver.download_object_as_stream(obj, chunk_size=chunk_size)
        else:
            stream = self._driver.download_object_range_as_stream(obj, start, end, chunk_size=chunk_size)
        for data in stream:
            if data:
                yield data

    def get_bytes(self, name: str) -> bytes:
        return b"".join(self.read_range(name))

    # --- deleting -------------------------------------------------------------------------------
    def delete(self, name: str) -> bool:
        try:
            obj = self._object(name)
        except ObjectDoesNotExistError:
            return False
        return bool(self._driver.delete_object(obj))

    def remove_leftovers(self, name: str, older_than: float) -> int:
        """Remove ``name`` and abort its multipart uploads begun before ``older_than`` (epoch seconds)."""
        removed = 0
        obj = None
        try:
            obj = self._object(name)
        except ObjectDoesNotExistError:
            pass
        if obj is not None:
            self._driver.delete_object(obj)
            removed += 1
        iterate = getattr(self._driver, "ex_iterate_multipart_uploads", None)
        if iterate is not None:  # S3: an upload cut short by a crash is an unfinished multipart upload
            for upload in iterate(self._bucket(), prefix=name):
                if upload.key == name and _epoch(upload.created_at) < older_than:
                    self._driver._abort_multipart(self._bucket(), upload.key, upload.id)
                    removed += 1
        return removed

    def sweep_temporary(self, older_than: float) -> list:
        return []  # unfinished multipart uploads are found through the pending-upload records

