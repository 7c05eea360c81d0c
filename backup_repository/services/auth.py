"""The authentication service: logins, token validation, refresh, sessions and logout (docs/api.md#authentication).

Plain Python on top of the configuration provider, the repository, the token service and the password
verifier; the HTTP layer only translates requests and responses.
"""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from backup_repository.config.provider import Change
from backup_repository.domain import roles as R
from backup_repository.domain.access import Actor, decide_global, may_act_globally
from backup_repository.domain.errors import Forbidden, NotFound, ServiceUnavailable, Unauthenticated
from backup_repository.domain.events import NO_EVENTS, Events
from backup_repository.domain.names import is_object_name
from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.times import utcnow
from backup_repository.domain.networks import address_allowed
from backup_repository.domain.users import User
from backup_repository.security.passwords import InvalidHash, Overloaded, PasswordVerifier
from backup_repository.security.tokens import TokenService, hash_token
from backup_repository.services import ports

log = logging.getLogger(__name__)

INCORRECT_CREDENTIALS = "incorrect Username or Password"
MISSING_CREDENTIALS = "missing Username or Password"
LOGIN_DESCRIPTION = "Login"
OVERLOADED = "the server is busy checking other logins, retry in a moment"
MAX_LISTED_SESSIONS = 100
RESTRICTED_TOKEN = ("a token limited by an operationsScope or opened with an access key may not view profiles or "
                    "manage sessions; log in with the user's own password")
PASSWORD_CHANGED = "the password of this account was changed since this token was issued; log in again"
KEY_PASSWORD_CHANGED = "the password of this access key was changed since this token was issued; log in again"
#: How long a revocation that the database refused waits before it is tried again.
REVOCATION_RETRY = 5.0


def credential_fingerprint(password_hash) -> str:
    """What a session records of the credential that opened it: a digest of the password hash, never the hash.

    The hash carries a random salt, so the fingerprint changes whenever the password is set again, even to the
    same password (docs/api.md#sessions-and-credentials)."""
    return hashlib.sha256(b"backup-repository session credential\0" + (password_hash or "").encode()).hexdigest()


@dataclass(frozen=True)
class LoginResult:
    """A login or a refresh: the token and the session it opened (shown by http/presenters/auth.py)."""

    token: str
    session: GrantedAccess


@dataclass(frozen=True)
class Principal:
    """Who is making an authenticated request: the actor and the session of the token used."""

    actor: Actor
    session: GrantedAccess

    @property
    def user(self) -> User:
        return self.actor.user


def split_login(login: str):
    """``user$accessKey`` -> (user, accessKey); the last ``$`` separates them, as in the original."""
    user, sep, key = login.rpartition("$")
    return (user, key) if sep else (login, "")


class AuthService:
    def __init__(self, config: ports.Configuration, db: ports.Repository, tokens: TokenService,
                 verifier: PasswordVerifier, clock: Callable[[], datetime] = utcnow, events: Events = NO_EVENTS):
        self._config = config
        self._events = events
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
            self._events.login("queue_full")
            raise ServiceUnavailable(OVERLOADED, retry_after=2) from None
        except InvalidHash:
            log.error("the password hash of user %r%s is malformed; login refused",
                      user_name, f" (access key {key_name!r})" if key_name else "")
            valid = False
        if not valid:
            log.info("login refused for %r from %s", login, client_ip)
            self._events.login("deactivated" if user is not None and user.deactivated else "bad_credentials")
            raise Unauthenticated(INCORRECT_CREDENTIALS)
        if not self._address_allowed(user, key, client_ip):
            log.info("login of %r refused: %s is outside restrictByIP", login, client_ip)
            self._events.login("ip_not_allowed")
            raise Unauthenticated(INCORRECT_CREDENTIALS)
        result = await self._open_session(user_name, key_name, scope, client_ip, password_hash)
        self._events.login("ok")
        return result

    async def _open_session(self, user_name, key_name, scope, client_ip, password_hash) -> LoginResult:
        token, expires_at = self._tokens.issue(user_name, key_name, scope)
        now = self._clock()
        session = GrantedAccess(
            id=hash_token(token), expires_at=expires_at, deactivated=False, description=LOGIN_DESCRIPTION,
            requester_ip=client_ip, user=user_name, access_key_name=key_name, created_at=now, updated_at=now,
            credential=credential_fingerprint(password_hash),
        )
        await self._db.sessions.create(session)
        log.info("session %s opened for %r%s from %s", session.id[:12], user_name,
                 f" (access key {key_name!r})" if key_name else "", client_ip)
        return LoginResult(token, session)

    async def authenticate(self, token: str, client_ip: str) -> Principal:
        """Validate a token and everything behind it; raise Unauthenticated (401) when anything is off."""
        if not token:
            raise Unauthenticated("auth header is empty")
        claims = self._tokens.decode(token)
        session = await self._db.sessions.get(hash_token(token))
        if session is None:
            raise Unauthenticated("token was revoked or has expired")
        user = self._config.user(claims.login)
        if user is None or user.deactivated:
            raise Unauthenticated("user account does not exist or is deactivated")
        key = None
        if claims.access_key_name:
            key = user.access_key(claims.access_key_name)
            if key is None:
                raise Unauthenticated("access key does not exist anymore")
        await self._check_credential(session, user, key)
        if not session.is_valid(self._clock()):
            raise Unauthenticated("token was revoked or has expired")
        if not self._address_allowed(user, key, client_ip):
            raise Unauthenticated("access from this address is not allowed for this user")
        return Principal(Actor(user, claims.access_key_name, claims.scope), session)

    async def _check_credential(self, session: GrantedAccess, user, key):
        """The session ends when the password (or access-key password) it was opened with has changed.

        Checked before the session's own state, so that a session the configuration reload already revoked for
        this reason still says why."""
        current = credential_fingerprint(key.password_hash if key is not None else user.password_hash)
        if session.credential and session.credential != current:
            if not session.deactivated:  # ended for good: setting the old password back does not revive it
                await self._db.sessions.deactivate(session.id, self._clock())
            raise Unauthenticated(KEY_PASSWORD_CHANGED if key is not None else PASSWORD_CHANGED)
        if not session.credential and session.is_valid(self._clock()):
            # opened before sessions recorded their credential: bound to the current one on first use
            await self._db.sessions.bind_credential(session.id, current)

    @staticmethod
    def _address_allowed(user, key, client_ip: str) -> bool:
        if not address_allowed(user.restrict_by_ip, client_ip):
            return False
        return key is None or address_allowed(key.restrict_by_ip, client_ip)

    async def refresh(self, principal: Principal, client_ip: str) -> LoginResult:
        """A new token and session with the same user, access key and scope; the old token stays valid."""
        actor = principal.actor
        return await self._open_session(actor.name, actor.access_key_name, actor.scope, client_ip,
                                        _credential_hash(principal))

    def view_user(self, principal: Principal, name: str):
        """The profile of ``name``: for the user itself, userManager and systemAdmin; never for a restricted token."""
        actor = principal.actor
        _refuse_restricted(actor)
        may_view_others = decide_global(actor, R.ACTION_VIEW_PROFILE)
        if name != actor.name and not may_view_others:
            raise Forbidden("no permissions to view that user account")
        user = self._config.user(name) if is_object_name(name) else None
        if user is None:
            raise NotFound("cannot find specified user")
        return user

    async def sessions(self, principal: Principal, user_name: Optional[str] = None) -> list:
        """Sessions of the caller, or of ``user_name`` for a systemAdmin; newest first, at most 100."""
        _refuse_restricted(principal.actor)
        target = principal.actor.name
        if user_name is not None and user_name != target:
            if not R.has_role(principal.user.roles, R.SYSTEM_ADMIN):
                raise Forbidden("no permissions to act as other user")
            target = user_name
        return await self._db.sessions.of_user(target, MAX_LISTED_SESSIONS)

    async def logout(self, principal: Principal, session_id: Optional[str] = None) -> str:
        """Deactivate the caller's session, or ``session_id``; return the id of the revoked session.

        Ending one's own session is always allowed; any other is a global action."""
        if session_id is None or session_id == principal.session.id:
            session_id = principal.session.id
        else:
            _refuse_restricted(principal.actor)
            session = await self._db.sessions.get(session_id)
            if session is None:
                raise NotFound("cannot find specified session")
            if session.user != principal.actor.name and not R.has_role(principal.user.roles, R.SYSTEM_ADMIN):
                raise Forbidden("you don't have permissions to revoke session of other user")
        await self._db.sessions.deactivate(session_id, self._clock())
        log.info("session %s revoked by %r", session_id[:12], principal.actor.name)
        return session_id


    # --- configuration changes ------------------------------------------------------------------
    async def configuration_changed(self, change: Change) -> None:
        """Revoke the sessions of users and access keys that left the configuration, and those opened with a
        password that was since set anew, so that neither comes back when the user, key or old password does
        (docs/api.md#sessions-and-credentials). Idempotent: several servers watching the same configuration may all
        do it. A revocation the database refuses is retried until it succeeds."""
        # (user name, access key name or None for every session, credential to keep or None, why)
        targets: list[tuple[str, Optional[str], Optional[str], str]] = [
            (name, None, None, "user left the configuration") for name in change.removed_users]
        targets += [(name, key, None, "access key left the configuration") for name, key in change.removed_access_keys]
        targets += [(name, key, credential_fingerprint(new_hash), "password changed")
                    for name, key, new_hash in change.changed_passwords]
        while targets:
            remaining = []
            for user_name, key_name, keep, reason in targets:
                who = f"{user_name}${key_name}" if key_name else user_name
                try:
                    count = await self._db.sessions.revoke(user_name, self._clock(), key_name, keep)
                except Exception as exc:
                    log.error("cannot revoke the sessions of %r yet (retrying in %gs): %s", who, REVOCATION_RETRY,
                              exc)
                    remaining.append((user_name, key_name, keep, reason))
                    continue
                log.info("%s of %r: %d session(s) revoked", reason, who, count)
            targets = remaining
            if targets:
                await asyncio.sleep(REVOCATION_RETRY)


def _refuse_restricted(actor: Actor):
    if not may_act_globally(actor):
        raise Forbidden(RESTRICTED_TOKEN)


def _credential_hash(principal: Principal):
    actor = principal.actor
    key = actor.user.access_key(actor.access_key_name) if actor.access_key_name else None
    return key.password_hash if key is not None else actor.user.password_hash
