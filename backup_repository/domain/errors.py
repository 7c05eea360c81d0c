"""Typed errors: what domain code raises (``DomainError`` and its kinds). ``http/errors.py`` maps each to one answer.
The failures of the infrastructure (a database or a store that fails) are not the domain's: they are in
``backup_repository/failures.py``.

The message of a DomainError is what the client sees, so it must never contain a secret.
"""

from typing import Optional


class DomainError(Exception):
    """Base of every error that is meant to reach a client.

    ``reason`` says, for code, which refusal this is where the kind alone does not (e.g. ``window_closed`` among
    the 403s of an upload): decisions are made on it, never on the message, which is for people and may be
    reworded. A kind may set a default reason as a class attribute."""

    status = 500
    reason: Optional[str] = None
    #: what exactly was wrong, for the server log only (the client sees ``message``)
    detail = ""

    def __init__(self, message: str, retry_after: Optional[int] = None, reason: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds; answered as a Retry-After header when set
        if reason is not None:
            self.reason = reason


class BadRequest(DomainError):
    status = 400


class Unauthenticated(DomainError):
    """Missing, invalid, expired or revoked credentials (401, the authentication envelope)."""

    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class RequestTimeout(DomainError):
    status = 408


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class TooManyRequests(DomainError):
    status = 429


class RangeNotSatisfiable(DomainError):
    status = 416

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size  # the object's, for the answer's Content-Range: bytes */size


class ServiceUnavailable(DomainError):
    status = 503


class InsufficientStorage(DomainError):
    status = 507


class InternalError(DomainError):
    """A failure the client can do nothing about; the message must say no more than the client may know."""

    status = 500
