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
- ``azblob://container``: Azure Blob Storage, as Go Cloud's azureblob opener reads it: the account from
  ``AZURE_STORAGE_ACCOUNT`` (or ``storage_account=``), signed with ``AZURE_STORAGE_KEY`` or authorised by
  ``AZURE_STORAGE_SAS_TOKEN``; ``domain=``, ``protocol=``, ``cdn=`` and ``localemu=`` (or ``AZURE_STORAGE_DOMAIN``,
  ``AZURE_STORAGE_PROTOCOL``, ``AZURE_STORAGE_IS_CDN``, ``AZURE_STORAGE_IS_LOCAL_EMULATOR``) shape the service
  address (storage/azure.py). No ``objectLock``: Azure's immutability is not supported.
"""

import base64
import binascii
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

TRUE_VALUES = ("1", "true", "yes", "on")
OBJECT_LOCK_MODES = ("governance", "compliance")
#: The query parameters of Go Cloud's azureblob opener; like Go Cloud, any other is refused.
AZBLOB_PARAMETERS = ("domain", "protocol", "cdn", "localemu", "storage_account")
#: Go's strconv.ParseBool, which Go Cloud reads cdn= and localemu= with.
GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


class StorageConfigError(ValueError):
    """The storage URL or its credentials are unusable; the message says what to fix."""


@dataclass(frozen=True)
class StorageLocation:
    scheme: str  # file, s3, gs or azblob
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
        endpoint = self.options.get("endpoint") or self.options.get("domain")
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
    if parts.scheme == "azblob":
        return _azblob_location(url, parts.netloc, query)
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
        f"{url!r}: unsupported storage URL; use file:///dir, s3://bucket?..., gs://bucket or azblob://container"
    )


def _azblob_location(url: str, container: str, query: dict) -> StorageLocation:
    if "objectLock" in query:
        raise StorageConfigError(
            f"{url!r}: objectLock is not available on azblob:// storage: Azure's immutability policies "
            "(version-level WORM) are not supported, so the store could not hold a collection's minimumRetention; "
            "remove objectLock (the server alone then enforces minimumRetention), or use s3:// with S3 Object Lock")
    if not container:
        raise StorageConfigError(f"{url!r}: the container name is missing (azblob://container)")
    unknown = sorted(set(query) - set(AZBLOB_PARAMETERS))
    if unknown:
        raise StorageConfigError(f"{url!r}: unknown parameter {unknown[0]!r} for azblob:// storage; known: "
                                 + ", ".join(AZBLOB_PARAMETERS))
    for name in ("cdn", "localemu"):
        if name in query and query[name] not in GO_BOOLS:
            raise StorageConfigError(f"{url!r}: {name} must be true or false, not {query[name]!r}")
    if query.get("protocol", "https") not in ("http", "https"):
        raise StorageConfigError(f"{url!r}: protocol must be http or https, not {query['protocol']!r}")
    return StorageLocation("azblob", container, query)


def _flag(options: dict, name: str, variable: str, environ) -> bool:
    """A yes/no setting of Go Cloud's azureblob opener: the URL parameter ``name``, else the variable."""
    value = options[name] if name in options else environ.get(variable) or "false"
    if value not in GO_BOOLS:
        raise StorageConfigError(f"{name if name in options else variable} must be true or false, not {value!r}")
    return GO_BOOLS[value]


def _azure_driver(location: StorageLocation, environ):
    """Go Cloud's azureblob opener: URL parameters first, then the AZURE_STORAGE_* variables."""
    from backup_repository.storage.azure import AzureBlobDriver, service_address

    options = location.options
    account = options.get("storage_account") or environ.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise StorageConfigError("Azure Blob Storage needs the storage account's name in AZURE_STORAGE_ACCOUNT "
                                 "(or storage_account= in the storage URL)")
    key, sas_token = environ.get("AZURE_STORAGE_KEY"), environ.get("AZURE_STORAGE_SAS_TOKEN")
    if not key and not sas_token:
        raise StorageConfigError(
            "Azure Blob Storage needs AZURE_STORAGE_KEY (the account's access key) or AZURE_STORAGE_SAS_TOKEN (a "
            "shared access signature) in the environment; connection strings and Azure AD credentials are not "
            "supported")
    if key:
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise StorageConfigError("AZURE_STORAGE_KEY is not an Azure access key (base64 text)") from None
    try:
        address = service_address(
            account,
            domain=options.get("domain") or environ.get("AZURE_STORAGE_DOMAIN", ""),
            protocol=options.get("protocol") or environ.get("AZURE_STORAGE_PROTOCOL", ""),
            cdn=_flag(options, "cdn", "AZURE_STORAGE_IS_CDN", environ),
            local_emulator=_flag(options, "localemu", "AZURE_STORAGE_IS_LOCAL_EMULATOR", environ))
    except ValueError as exc:
        raise StorageConfigError(f"Azure Blob Storage: {exc}") from None
    # Go Cloud's order: the account key when there is one, else the SAS token
    return AzureBlobDriver(address, key=key or None, sas_token=None if key else sas_token)


def make_driver(location: StorageLocation, environ=os.environ):
    """Return (libcloud driver, container name) for an S3 or Azure location (local directories are served by
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

    if location.scheme == "azblob":
        return _azure_driver(location, environ), location.bucket

    raise StorageConfigError(f"unsupported storage scheme {location.scheme!r}")
