"""Collections as the API lists them (docs/openapi.yaml ``Collection``; docs/api.md#collections)."""

from backup_repository.domain.collections import ListedCollection
from backup_repository.domain.times import format_time


def collection(listed: ListedCollection) -> dict:
    """A collection with its limits and its usage; ``latestVersionAt`` is null without a version."""
    settings, usage = listed.collection, listed.usage
    return {
        "id": settings.id,
        "description": settings.description,
        "versionsCount": usage.versions_count,
        "usedBytes": usage.used_bytes,
        "maxBackupsCount": settings.max_backups_count,
        "maxCollectionSize": settings.max_collection_size,
        "latestVersionAt": format_time(usage.latest_version_at),
    }


def collections(listing) -> dict:
    """``GET /api/stable/repository/collection``: the collections in the order given (by id)."""
    return {"collections": [collection(listed) for listed in listing]}
