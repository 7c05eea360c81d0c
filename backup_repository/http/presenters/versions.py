"""Versions as the API shows them (docs/openapi.yaml ``Version``; docs/api.md#collections)."""

from backup_repository.domain.times import format_time
from backup_repository.domain.versions import Version


def version(stored: Version) -> dict:
    """A stored version: the Go server's fields (its gorm timestamps capitalised) and the sha256 of the bytes."""
    return {
        "id": stored.id,
        "collectionId": stored.collection_id,
        "versionNumber": stored.number,
        "filename": stored.filename,
        "filesize": stored.size,
        "sha256": stored.sha256,
        "uploadedBySessionId": stored.uploaded_by_session_id,
        "user": stored.user,
        "CreatedAt": format_time(stored.created_at),
        "UpdatedAt": format_time(stored.updated_at),
        "DeletedAt": format_time(stored.deleted_at),
    }


def versions(listed) -> dict:
    """``GET .../collection/{id}/version``: the versions in the order given (ascending by number)."""
    return {"versions": [version(each) for each in listed]}


def uploaded(stored: Version) -> dict:
    """``POST .../collection/{id}/version``: the version just stored."""
    return {"version": version(stored)}
