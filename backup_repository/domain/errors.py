"""Typed errors: what domain code raises (``DomainError`` and its kinds), and the failures of the infrastructure that
every layer may meet (``DatabaseError``, ``StorageError``). ``http/errors.py`` maps each to one answer.

The message of a DomainError is what the client sees, so it must never contain a secret.
"""


class DomainError(Exception):
    """Base of every error that is meant to reach a client.

    ``reason`` says, for code, which refusal this is where the kind alone does not (e.g. ``window_closed`` among
    the 403s of an upload): decisions are made on it, never on the message, which is for people and may be
    reworded. A kind may set a default reason as a class attribute."""

    status = 500
    reason = None

    def __init__(self, message: str, retry_after: int = None, reason: str = None):
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


class ServiceUnavailable(DomainError):
    status = 503


class InsufficientStorage(DomainError):
    status = 507


class DatabaseError(Exception):
    """The database cannot be reached or refused an operation; the message says what to check (raised by db/)."""


class DatabaseUnavailable(DatabaseError):
    """The database went away while serving (stopped, restarted, unreachable): answered 503 until it is back."""


class LeaseLost(DatabaseError):
    """An upload's pending row was taken over by the janitor (the upload's lease ran out): the upload may no longer
    register its version (raised by db/, docs/scaling.md#what-is-guaranteed)."""


class StorageError(Exception):
    """The object store cannot be reached or refused an operation (raised by storage/)."""


class InternalError(DomainError):
    """A failure the client can do nothing about; the message must say no more than the client may know."""

    status = 500
