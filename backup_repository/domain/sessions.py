"""Granted accesses: one row per issued token, so that every token can be listed and revoked."""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(value: Optional[datetime]) -> Optional[str]:
    """RFC 3339 in UTC with microseconds, like Go's time.Time JSON form (``2026-01-02T03:04:05.123456Z``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class GrantedAccess:
    id: str  # sha256 hex of the token: the sessionId
    expires_at: datetime
    deactivated: bool
    description: str
    requester_ip: str
    user: str
    access_key_name: str
    created_at: datetime
    updated_at: datetime
    deleted_at: Optional[datetime] = None
    #: fingerprint of the password or access-key hash the session was opened with; never shown to clients
    credential: str = ""

    def is_valid(self, now: datetime) -> bool:
        return not self.deactivated and self.deleted_at is None and now < self.expires_at

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "expiresAt": format_time(self.expires_at),
            "deactivated": self.deactivated,
            "description": self.description,
            "requesterIP": self.requester_ip,
            "user": self.user,
            "accessKeyName": self.access_key_name,
            "CreatedAt": format_time(self.created_at),
            "UpdatedAt": format_time(self.updated_at),
            "DeletedAt": format_time(self.deleted_at),
        }
