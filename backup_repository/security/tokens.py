"""HS256 JWTs with the original's claims (docs/api.md#tokens) plus a unique ``jti``.

``operationsScope`` is base64 of the JSON ``{"elements": [...]}``; it is empty when the token is not scoped.
"""

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import jwt

from backup_repository.domain.access import parse_scope, scope_to_json
from backup_repository.domain.errors import Unauthenticated
from backup_repository.security.untrusted import load_json

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
#: Shorter keys work (the Go server accepted any) but are reported once at start-up, not on every request.
RECOMMENDED_KEY_BYTES = 32
#: Tokens issued here are about 500 bytes; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 8 << 10
#: The last second a datetime can hold (9999-12-31T23:59:59Z): an ``exp`` beyond it cannot be one we issued.
LATEST_EXPIRY = 253402300799

try:
    from jwt.warnings import InsecureKeyLengthWarning
except ImportError:  # older PyJWT does not warn at all
    SHORT_KEY_WARNING: Optional[type[Warning]] = None
else:
    SHORT_KEY_WARNING = InsecureKeyLengthWarning


@contextlib.contextmanager
def _short_keys_allowed():
    """PyJWT warns about HMAC keys under 64 bytes on every call; the Go server accepted any key, so a short one is
    reported once at start-up instead (context.py), and silenced here, for these calls only."""
    with warnings.catch_warnings():
        if SHORT_KEY_WARNING is not None:
            warnings.simplefilter("ignore", SHORT_KEY_WARNING)
        yield


def hash_token(token: str) -> str:
    """The sessionId of a token: lowercase sha256 hex, as ``--hash-jwt`` prints it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Claims:
    login: str
    access_key_name: str
    scope: tuple
    expires_at: datetime


class TokenService:
    def __init__(self, secret: str, lifetime_seconds: float, clock=time.time):
        self._secret = secret.encode("utf-8")
        self.lifetime = lifetime_seconds
        self._clock = clock
        self._jws = jwt.PyJWS()

    def issue(self, login: str, access_key_name: str, scope: tuple):
        """Return (token, expiry as an aware datetime)."""
        now = int(self._clock())
        expires = now + int(self.lifetime)
        scope_json = scope_to_json(scope)
        claims = {
            "login": login,
            "accessKeyName": access_key_name,
            "operationsScope": base64.b64encode(json.dumps(scope_json).encode()).decode() if scope_json else "",
            "exp": expires,
            "orig_iat": now,
            "jti": uuid.uuid4().hex,
        }
        with _short_keys_allowed():
            token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return token, datetime.fromtimestamp(expires, timezone.utc)

    def decode(self, token: str) -> Claims:
        """Check signature, algorithm and expiry; raise Unauthenticated when anything is off.

        Whatever the token holds (claims nested a thousand levels deep, an ``exp`` of 1e308), the answer is this
        one error, never another exception."""
        if len(token) > MAX_TOKEN_LENGTH or not _header_is_bounded(token):
            raise Unauthenticated("token is invalid")
        try:
            # the signature is checked over the raw payload; its JSON is parsed once, here, within bounds
            with _short_keys_allowed():
                payload = self._jws.decode(token, self._secret, algorithms=[ALGORITHM])
            claims = load_json(payload)
        except (jwt.PyJWTError, ValueError):
            raise Unauthenticated("token is invalid") from None
        except Exception as exc:  # a library failing on hostile input is still just an invalid token
            log.debug("token refused by the JWT library: %s", type(exc).__name__)
            raise Unauthenticated("token is invalid") from None
        if not isinstance(claims, dict):
            raise Unauthenticated("token is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or not math.isfinite(exp) \
                or exp > LATEST_EXPIRY:
            raise Unauthenticated("token is invalid")
        if exp <= self._clock():
            raise Unauthenticated("token is expired")
        login, key = claims.get("login"), claims.get("accessKeyName", "")
        if not isinstance(login, str) or not login or not isinstance(key, str):
            raise Unauthenticated("token is invalid")
        return Claims(login, key, _decode_scope(claims.get("operationsScope")),
                      datetime.fromtimestamp(exp, timezone.utc))


def _header_is_bounded(token: str) -> bool:
    """The header of a token is JSON of a sane depth (checked before the JWT library parses it)."""
    header = token.split(".", 1)[0]
    try:
        load_json(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return True


def _decode_scope(value) -> tuple:
    if value in (None, ""):
        return ()
    if not isinstance(value, str):
        raise Unauthenticated("token is invalid")
    try:
        document = load_json(base64.b64decode(value, validate=True))
        if document is None:
            return ()
        if not isinstance(document, dict):
            raise ValueError("not an object")
        return parse_scope(document.get("elements"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Unauthenticated("token is invalid") from None
