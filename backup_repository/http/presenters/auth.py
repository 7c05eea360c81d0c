"""Tokens and users as the API shows them (docs/openapi.yaml ``Token``, whoami and viewUser;
docs/api.md#authentication)."""

from backup_repository.domain.users import User
from backup_repository.http.presenters.sessions import granted_access

TOKEN_MESSAGE = "Use this sessionId to revoke this token anytime"


def token(result) -> dict:
    """A login or a refresh (services/auth.LoginResult): the token and its session. ``expire`` is to the second, as
    the Go server writes it."""
    return {
        "token": result.token,
        "sessionId": result.session.id,
        "expire": result.session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "msg": TOKEN_MESSAGE,
    }


def profile(user: User) -> dict:
    """``GET /api/stable/auth/user/{name}``: what anyone allowed to see a user sees of it."""
    return {"email": user.email, "permissions": list(user.roles)}


def whoami(principal) -> dict:
    """``GET /api/stable/auth/whoami``: the caller's profile and the session of its token
    (services/auth.Principal)."""
    return {**profile(principal.user), "sessionId": principal.session.id,
            "grantedAccess": granted_access(principal.session)}
