"""What a row's values come back as, the same on both backends."""

from datetime import datetime, timezone
from typing import Optional


def timestamp(value) -> Optional[datetime]:
    """A time as an aware datetime: aggregates lose SQLite's column type, so MAX() of a timestamp comes back as its
    text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value
