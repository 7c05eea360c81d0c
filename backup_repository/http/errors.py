"""The one table from failures to answers: every handler, the upload rejection path and ``/ready`` answer through
``answer_for``, so that one failure gets the same status, message and ``Retry-After`` on every path
(docs/api.md#errors). ``log_failure`` says, in one place, how each kind of failure is logged.
"""

import errno
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Optional

import tornado.web

from backup_repository.domain.errors import DomainError, Unauthenticated
from backup_repository.failures import DatabaseError, StorageError

log = logging.getLogger("backup_repository.http")

STORAGE_UNAVAILABLE = "the storage is not available; the server log has the details"
STORAGE_FULL = "the storage is full"
DATABASE_UNAVAILABLE = "the database is not available; the server log has the details"
INTERNAL_ERROR = "internal server error"
#: Seconds a client is asked to wait before retrying while the database or the store is away.
OUTAGE_RETRY_AFTER = 5


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    retry_after: Optional[int] = None


def envelope(message: str) -> dict:
    return {"status": False, "error": message, "data": {}}


def answer_for(exc: Optional[BaseException], status_code: int = 500) -> Answer:
    """The answer to ``exc`` (``status_code`` is Tornado's, used for its own HTTP errors)."""
    if isinstance(exc, Unauthenticated):
        return Answer(401, {"status": False, "code": 401, "message": exc.message, "data": {}})
    if isinstance(exc, DomainError):
        return Answer(exc.status, envelope(exc.message), exc.retry_after)
    if isinstance(exc, StorageError):
        if disk_full(exc):
            return Answer(507, envelope(STORAGE_FULL))
        return Answer(503, envelope(STORAGE_UNAVAILABLE), OUTAGE_RETRY_AFTER)
    if isinstance(exc, DatabaseError):
        return Answer(503, envelope(DATABASE_UNAVAILABLE), OUTAGE_RETRY_AFTER)
    if isinstance(exc, tornado.web.HTTPError):
        return Answer(exc.status_code, envelope(_reason(exc.status_code, exc)))
    return Answer(500, envelope(INTERNAL_ERROR))


def disk_full(exc: BaseException) -> bool:
    """True when the store ran out of space (ENOSPC or EDQUOT somewhere in the chain of causes)."""
    cause: Optional[BaseException] = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def log_failure(method: str, path: str, exc: BaseException, exc_info=None):
    """Client errors at debug level (info when they carry a detail for the operator, e.g. why an upload is no
    OpenPGP message); outages as one error line, no traceback; anything else with its traceback."""
    if isinstance(exc, DomainError):
        detail = getattr(exc, "detail", "")
        if detail:
            log.info("%s %s -> %d %s (%s)", method, path, exc.status, exc.message, detail)
        else:
            log.debug("%s %s -> %d %s", method, path, exc.status, exc.message)
    elif isinstance(exc, StorageError):
        log.error("%s %s: the store failed: %s", method, path, exc)
    elif isinstance(exc, DatabaseError):
        log.error("%s %s: the database failed: %s", method, path, exc)
    elif isinstance(exc, tornado.web.HTTPError):
        log.debug("%s %s -> %d", method, path, exc.status_code)
    else:
        log.error("%s %s failed", method, path, exc_info=exc_info or exc)


def _reason(status_code: int, exc: tornado.web.HTTPError) -> str:
    if exc.log_message and status_code < 500 and "%" not in exc.log_message:
        return exc.log_message
    try:
        return HTTPStatus(status_code).phrase.lower()
    except ValueError:
        return "error"
