"""Typed errors raised by domain code; ``http/base.py`` maps each to a status code and the JSON envelope.

The message of an error is what the client sees, so it must never contain a secret.
"""


class DomainError(Exception):
    """Base of every error that is meant to reach a client."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
