"""The clock and the time format of the API (shared by sessions, versions and the services)."""

from datetime import datetime, timezone
from typing import Optional, overload


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def format_time(value: datetime) -> str: ...
@overload
def format_time(value: None) -> None: ...


def format_time(value: Optional[datetime]) -> Optional[str]:
    """RFC 3339 in UTC with microseconds, like Go's time.Time JSON form (``2026-01-02T03:04:05.123456Z``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
