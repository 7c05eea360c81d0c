"""Sessions (granted accesses) as the API shows them (docs/openapi.yaml ``GrantedAccess``;
docs/api.md#sessions-and-credentials). The credential a session was opened with is never shown."""

from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.times import format_time

REVOKED = "JWT was revoked"


def granted_access(session: GrantedAccess) -> dict:
    return {
        "id": session.id,
        "expiresAt": format_time(session.expires_at),
        "deactivated": session.deactivated,
        "description": session.description,
        "requesterIP": session.requester_ip,
        "user": session.user,
        "accessKeyName": session.access_key_name,
        "CreatedAt": format_time(session.created_at),
        "UpdatedAt": format_time(session.updated_at),
        "DeletedAt": format_time(session.deleted_at),
    }


def sessions(listed) -> dict:
    """``GET /api/stable/auth/token``: the sessions in the order given (newest first)."""
    return {"grantedAccesses": [granted_access(session) for session in listed]}


def revoked(session_id: str) -> dict:
    """``DELETE /api/stable/auth/logout``: the id of the session that was revoked."""
    return {"message": REVOKED, "sessionId": session_id}
