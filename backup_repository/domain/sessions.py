"""Granted accesses: one row per issued token, so that every token can be listed and revoked."""

from dataclasses import dataclass
from datetime import datetime
from typing import Optional


@dataclass(frozen=True)
class GrantedAccess:
    """A session as stored; the API shows it as http/presenters/sessions.py writes it."""

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
