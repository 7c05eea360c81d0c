"""Backup collections, as read from BackupCollection documents."""

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

STRATEGY_FIFO = "fifo"
STRATEGY_FIFO_PLUS_OLDER = "fifo-plus-older"
STRATEGIES = (STRATEGY_FIFO, STRATEGY_FIFO_PLUS_OLDER)

VERSION_PLACEHOLDER = "${version}"
COLLECTION_NOT_FOUND = "cannot find specified collection"


@dataclass(frozen=True, slots=True)
class BackupWindow:
    """Uploads are allowed from each time the cron expression ``cron`` fires until ``duration`` seconds later."""

    cron: str
    duration: float
    duration_text: str


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    description: str = ""
    filename_template: str = "backup-${version}.tar.gz"
    max_backups_count: int = 0
    max_one_version_size: int = 0
    max_collection_size: int = 0
    windows: tuple = ()
    strategy_name: str = STRATEGY_FIFO
    keep_last_older_not_more_than: Optional[float] = None
    max_older_copies: int = 0
    health_code_sha256: Optional[str] = None  # lowercase hex; None when no healthSecretRef is set
    minimum_retention: Optional[float] = None  # seconds no version may be deleted after it was stored; None: no floor
    access_control: tuple = ()  # ObjectGrant with type "user"

    def filename_for(self, version: int) -> str:
        return self.filename_template.replace(VERSION_PLACEHOLDER, str(version))


@dataclass(frozen=True, slots=True)
class Usage:
    """What a collection holds: its versions, their bytes, and when the latest was stored (None without one)."""

    versions_count: int
    used_bytes: int
    latest_version_at: Optional[datetime]


@dataclass(frozen=True, slots=True)
class ListedCollection:
    """A collection in the caller's listing (shown by http/presenters/collections.py)."""

    collection: Collection
    usage: Usage


@dataclass(frozen=True, slots=True)
class CollectionStatus:
    """What kubectl users see of a collection (docs/kubernetes.md#status; written by the configuration provider
    that shows status, config/kubernetes.py): its usage and the health checks that fail, as (name, message)."""

    usage: Usage
    failed: tuple = ()

    @property
    def healthy(self) -> bool:
        return not self.failed
