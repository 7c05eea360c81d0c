"""The authentication service: logins, token validation, refresh, sessions and logout (CONTRACT §4, §5).

Plain Python on top of the configuration provider, the repository, the token service and the password
verifier; the HTTP layer only translates requests and responses.
"""

import logging
from dataclasses import dataclass

from backup_repository.domain import roles as R
from backup_repository.domain.access import Actor, decide_global
from backup_repository.domain.errors import Forbidden, NotFound, Unauthenticated
from backup_repository.domain.names import is_object_name
from backup_repository.domain.sessions import GrantedAccess, utcnow
from backup_repository.domain.users import address_allowed
from backup_repository.domain.errors import ServiceUnavailable
from backup_repository.security.passwords import InvalidHash, Overloaded
from backup_repository.security.tokens import hash_token

log = logging.getLogger(__name__)

INCORRECT_CREDENTIALS = "incorrect Username or Password"
MISSING_CREDENTIALS = "missing Username or Password"
LOGIN_DESCRIPTION = "Login"
OVERLOADED = "the server is busy checking other logins, retry in a moment"
MAX_LISTED_SESSIONS = 100


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: GrantedAccess

    def to_json(self) -> dict:
        return {
            "token": self.token,
            "sessionId": self.session.id,
            "expire": self.session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msg": "Use this sessionId to revoke this token anytime",
        }


@dataclass(frozen=True)
class Principal:
    """Who is making an authenticated request: the actor and the session of the token used."""

    actor: Actor
    session: GrantedAccess

    @property
    def user(self):
        return self.actor.user


def split_login(login: str):
    """``user$accessKey`` -> (user, accessKey); the last ``$`` separates them, as in the original."""
    user, sep, key = login.rpartition("$")
    return (user, key) if sep else (login, "")


class AuthService:
    def __init__(self, config, db, tokens, verifier, clock=utcnow):
        self._config = config
        self._db = db
        self._tokens = tokens
        self._verifier = verifier
        self._clock = clock

    async def login(self, login: str, password: str, scope: tuple, client_ip: str) -> LoginResult:
        """Check the credentials and open a session; every refusal looks the same to the client."""
        user_name, key_name = split_login(login)
        well_formed = is_object_name(user_name) and (key_name or "$" not in login)  # "user$" names no key
        user = self._config.user(user_name) if well_formed else None
        key = user.access_key(key_name) if (user and key_name) else None
        password_hash = None
        if user is not None and not user.deactivated and (not key_name or key is not None):
            password_hash = key.password_hash if key is not None else user.password_hash
        try:
            # Always run one verification, against a dummy hash when there is nothing to check against.
            valid = await self._verifier.verify(password, password_hash)
        except Overloaded as exc:
            log.warning("login of %r from %s refused: %s", login, client_ip, exc)
            raise ServiceUnavailable(OVERLOADED, retry_after=2) from None
        except InvalidHash:
            log.error("the password hash of user %r%s is malformed; login refused",
                      user_name, f" (access key {key_name!r})" if key_name else "")
            valid = False
        if not valid:
            log.info("login refused for %r from %s", login, client_ip)
            raise Unauthenticated(INCORRECT_CREDENTIALS)
        if not self._address_allowed(user, key, client_ip):
            log.info("login of %r refused: %s is outside restrictByIP", login, client_ip)
            raise Unauthenticated(INCORRECT_CREDENTIALS)
        return await self._open_session(user_name, key_name, scope, client_ip)

    async def _open_session(self, user_name, key_name, scope, client_ip) -> LoginResult:
        token, expires_at = self._tokens.issue(user_name, key_name, scope)
        now = self._clock()
        session = GrantedAccess(
            id=hash_token(token), expires_at=expires_at, deactivated=False, description=LOGIN_DESCRIPTION,
            requester_ip=client_ip, user=user_name, access_key_name=key_name, created_at=now, updated_at=now,
        )
        await self._db.create_session(session)
        log.info("session %s opened for %r%s from %s", session.id[:12], user_name,
                 f" (access key {key_name!r})" if key_name else "", client_ip)
        return LoginResult(token, session)

    async def authenticate(self, token: str, client_ip: str) -> Principal:
        """Validate a token and everything behind it; raise Unauthenticated (401) when anything is off."""
        if not token:
            raise Unauthenticated("auth header is empty")
        claims = self._tokens.decode(token)
        session = await self._db.get_session(hash_token(token))
        if session is None or not session.is_valid(self._clock()):
            raise Unauthenticated("token was revoked or has expired")
        user = self._config.user(claims.login)
        if user is None or user.deactivated:
            raise Unauthenticated("user account does not exist or is deactivated")
        key = None
        if claims.access_key_name:
            key = user.access_key(claims.access_key_name)
            if key is None:
                raise Unauthenticated("access key does not exist anymore")
        if not self._address_allowed(user, key, client_ip):
            raise Unauthenticated("access from this address is not allowed for this user")
        return Principal(Actor(user, claims.access_key_name, claims.scope), session)

    @staticmethod
    def _address_allowed(user, key, client_ip: str) -> bool:
        if not address_allowed(user.restrict_by_ip, client_ip):
            return False
        return key is None or address_allowed(key.restrict_by_ip, client_ip)

    async def refresh(self, principal: Principal, client_ip: str) -> LoginResult:
        """A new token and session with the same user, access key and scope; the old token stays valid."""
        actor = principal.actor
        return await self._open_session(actor.name, actor.access_key_name, actor.scope, client_ip)

    def view_user(self, principal: Principal, name: str):
        """The profile of ``name``: for the user itself, userManager and systemAdmin."""
        actor = principal.actor
        may_view_others = decide_global(actor, R.ACTION_VIEW_PROFILE)
        if name != actor.name and not may_view_others:
            raise Forbidden("no permissions to view that user account")
        user = self._config.user(name) if is_object_name(name) else None
        if user is None:
            raise NotFound("cannot find specified user")
        return user

    async def sessions(self, principal: Principal, user_name: str = None) -> list:
        """Sessions of the caller, or of ``user_name`` for a systemAdmin; newest first, at most 100."""
        target = principal.actor.name
        if user_name is not None and user_name != target:
            if not R.has_role(principal.user.roles, R.SYSTEM_ADMIN):
                raise Forbidden("no permissions to act as other user")
            target = user_name
        return await self._db.list_sessions(target, MAX_LISTED_SESSIONS)

    async def logout(self, principal: Principal, session_id: str = None) -> str:
        """Deactivate the caller's session, or ``session_id``; return the id of the revoked session."""
        if session_id is None:
            session_id = principal.session.id
        else:
            session = await self._db.get_session(session_id)
            if session is None:
                raise NotFound("cannot find specified session")
            if session.user != principal.actor.name and not R.has_role(principal.user.roles, R.SYSTEM_ADMIN):
                raise Forbidden("you don't have permissions to revoke session of other user")
        await self._db.deactivate_session(session_id, self._clock())
        log.info("session %s revoked by %r", session_id[:12], principal.actor.name)
        return session_id

