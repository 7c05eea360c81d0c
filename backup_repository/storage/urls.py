"""Storage URLs in the gocloud syntax of the Go server (docs/configuration.md#storage-urls), turned into
libcloud drivers.

- ``file:///absolute/dir``: a local directory.
- ``s3://bucket?endpoint=host:port&disableSSL=true&s3ForcePathStyle=true&region=eu-central-1``: AWS S3 or any
  S3-compatible server; credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
  ``AWS_SESSION_TOKEN``). libcloud always addresses buckets path-style, so ``s3ForcePathStyle`` is accepted and
  has no further effect. ``objectLock=governance|compliance``: objects of collections with a minimumRetention are
  written under S3 Object Lock (the bucket must have it enabled).
- ``gs://bucket``, or a bare bucket name with ``--use-google-cloud``: Google Cloud Storage with the service
  account file named by ``GOOGLE_APPLICATION_CREDENTIALS``, or on the emulator named by ``STORAGE_EMULATOR_HOST``
  (storage/gcs.py).
"""

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

TRUE_VALUES = ("1", "true", "yes", "on")
OBJECT_LOCK_MODES = ("governance", "compliance")


class StorageConfigError(ValueError):
    """The storage URL or its credentials are unusable; the message says what to fix."""


@dataclass(frozen=True)
class StorageLocation:
    scheme: str  # file, s3 or gs
    bucket: str  # the directory for file://
    options: dict = field(default_factory=dict)

    @property
    def object_lock(self):
        """``governance`` or ``compliance`` when the URL asks for S3 Object Lock (``objectLock=``), else None."""
        lock = self.options.get("objectLock")
        return lock.lower() if lock else None

    def describe(self) -> str:
        if self.scheme == "file":
            return f"local directory {self.bucket}"
        endpoint = self.options.get("endpoint")
        where = f" at {endpoint}" if endpoint else ""
        lock = f" with Object Lock ({self.object_lock})" if self.object_lock else ""
        return f"{self.scheme}://{self.bucket}{where}{lock}"


def parse_storage_url(url: str, use_google_cloud: bool = False) -> StorageLocation:
    url = (url or "").strip()
    if not url:
        raise StorageConfigError("--storage-url is empty")
    if use_google_cloud and "://" not in url:
        return StorageLocation("gs", url)
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if "objectLock" in query and parts.scheme != "s3":
        raise StorageConfigError(f"{url!r}: objectLock is an option of s3:// storage only (S3 Object Lock)")
    if parts.scheme == "file":
        path = os.path.expanduser(parts.netloc + parts.path) if parts.netloc == "~" else parts.path
        if parts.netloc not in ("", "localhost", "~"):
            raise StorageConfigError(f"{url!r}: a file URL needs an absolute path, like file:///var/lib/backups")
        if not os.path.isabs(path) or path.rstrip("/") == "":
            raise StorageConfigError(f"{url!r}: a file URL needs an absolute directory, like file:///var/lib/backups")
        return StorageLocation("file", os.path.normpath(path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageConfigError(f"{url!r}: the bucket name is missing (s3://bucket?region=...)")
        lock = query.get("objectLock")
        if lock is not None and lock.lower() not in OBJECT_LOCK_MODES:
            raise StorageConfigError(f"{url!r}: objectLock must be governance or compliance, not {lock!r}")
        return StorageLocation("s3", parts.netloc, query)
    if parts.scheme == "gs":
        if not parts.netloc:
            raise StorageConfigError(f"{url!r}: the bucket name is missing (gs://bucket)")
        return StorageLocation("gs", parts.netloc, query)
    raise StorageConfigError(
        f"{url!r}: unsupported storage URL; use file:///dir, s3://bucket?... or gs://bucket"
    )


def make_driver(location: StorageLocation, environ=os.environ):
    """Return (libcloud driver, container name) for an S3 location (local directories are served by
    storage/local.py, Google Cloud Storage by storage/gcs.py)."""
    from libcloud.storage.providers import get_driver
    from libcloud.storage.types import Provider

    if location.scheme == "s3":
        options = location.options
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise StorageConfigError("S3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
        kwargs = {"region": options.get("region") or environ.get("AWS_REGION") or "us-east-1"}
        secure = options.get("disableSSL", "false").lower() not in TRUE_VALUES
        kwargs["secure"] = secure
        if environ.get("AWS_SESSION_TOKEN"):
            kwargs["token"] = environ["AWS_SESSION_TOKEN"]
        endpoint = options.get("endpoint")
        if endpoint:
            parsed = urlsplit("//" + endpoint.split("://", 1)[-1])
            try:
                kwargs["host"], kwargs["port"] = parsed.hostname, parsed.port or (443 if secure else 80)
            except ValueError:
                raise StorageConfigError(f"endpoint {endpoint!r}: the port is not a number") from None
            if not kwargs["host"]:
                raise StorageConfigError(f"endpoint {endpoint!r}: expected host:port")
        return get_driver(Provider.S3)(key, secret, **kwargs), location.bucket

    raise StorageConfigError(f"unsupported storage scheme {location.scheme!r}")
