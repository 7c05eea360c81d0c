"""The blob store: objects named ``{collectionId}/{filename}`` in one bucket (or directory), via libcloud.

Every libcloud call blocks, so each runs on a bounded thread pool, never on the event loop.
"""

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

from backup_repository.storage.urls import StorageConfigError, StorageLocation, make_driver, parse_storage_url

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The store cannot be reached or refused an operation."""


class BlobStore:
    def __init__(self, location: StorageLocation, driver, container_name: str, io_threads: int = 16):
        self.location = location
        self._driver = driver
        self._container_name = container_name
        self._container = None
        self._executor = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="storage")

    @classmethod
    def from_url(cls, url: str, use_google_cloud: bool = False, create_local: bool = False) -> "BlobStore":
        """Build the store for ``url``; ``create_local`` creates a missing local directory (embedded default)."""
        location = parse_storage_url(url, use_google_cloud)
        if location.scheme == "file" and create_local:
            os.makedirs(location.bucket, mode=0o700, exist_ok=True)
        if location.scheme == "file" and not os.path.isdir(location.bucket):
            raise StorageConfigError(
                f"the storage directory {location.bucket} does not exist; create it or fix --storage-url"
            )
        driver, container = make_driver(location)
        return cls(location, driver, container)

    def describe(self) -> str:
        return self.location.describe()

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open_container(self):
        try:
            return self._driver.get_container(self._container_name)
        except ContainerDoesNotExistError:
            raise StorageError(f"the bucket {self._container_name!r} does not exist in {self.describe()}") from None
        except Exception as exc:  # network, credentials, TLS: libcloud raises many types
            raise StorageError(f"cannot reach {self.describe()}: {_reason(exc)}") from exc

    async def open(self):
        """Check at start-up that the bucket is reachable."""
        self._container = await self._run(self._open_container)

    async def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- small objects --------------------------------------------------------------------------
    def _put_bytes_sync(self, name: str, data: bytes):
        self._driver.upload_object_via_stream(iter([data]), self._container, name)

    def _get_bytes_sync(self, name: str) -> bytes:
        obj = self._driver.get_object(self._container_name, name)
        return b"".join(self._driver.download_object_as_stream(obj))

    def _delete_sync(self, name: str) -> bool:
        try:
            obj = self._driver.get_object(self._container_name, name)
        except ObjectDoesNotExistError:
            return False
        return self._driver.delete_object(obj)

    async def delete(self, name: str) -> bool:
        return await self._run(self._delete_sync, name)

    async def health_check(self, timeout: float):
        """Write, read back and delete a ``.health-<nanoseconds>`` object within ``timeout`` seconds."""
        name = f".health-{time.time_ns()}"
        payload = f"health check {name}".encode()

        async def round_trip():
            if self._container is None:
                self._container = await self._run(self._open_container)
            await self._run(self._put_bytes_sync, name, payload)
            try:
                if await self._run(self._get_bytes_sync, name) != payload:
                    raise StorageError("the object read back differs from the one written")
            finally:
                await self._run(self._delete_sync, name)

        try:
            await asyncio.wait_for(round_trip(), timeout)
        except asyncio.TimeoutError:
            raise StorageError(f"no answer from {self.describe()} within {timeout:g}s") from None
        except StorageError:
            raise
        except Exception as exc:  # libcloud, network and OS errors alike
            raise StorageError(f"{self.describe()}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
