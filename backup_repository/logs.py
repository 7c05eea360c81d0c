"""The server's log (docs/monitoring.md#logs): readable lines (``--log-format=text``) or one JSON object per line
(``--log-format=json``) for log shippers, and the request each line is about.

While a request is served, ``serving(handler)`` records it in a context variable; every line logged in that
request's context (the handler, the services it calls, the tasks they start) carries the request's id, and in JSON
its client address, user and collection — ``handler.log_fields()`` says which. Messages are the same in both
formats; what a message must never contain (secrets, tokens, query strings) it never contains in either.
"""

import contextvars
import json
import logging
import sys
import time
import weakref
from typing import Optional

#: A weak reference to the handler of the request being served in this context, or None.
_REQUEST: contextvars.ContextVar[Optional[weakref.ref]] = contextvars.ContextVar("backup_repository_request",
                                                                                  default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that are noisy at debug level and may print request details: kept at info or above.
QUIET_LIBRARIES = ("asyncio", "libcloud", "urllib3")
#: Characters no log line carries raw, whatever a client sent (docs/security.md): the C0 controls and DEL (a line
#: feed forges a line), the C1 controls (U+0085 is a line break to Python's splitlines() and to many viewers) and
#: the Unicode line and paragraph separators. The text format writes them as \xNN or \uNNNN; JSON as \uNNNN.
UNSAFE = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
TEXT_ESCAPES = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in UNSAFE}
JSON_ESCAPES = {code: f"\\u{code:04x}" for code in UNSAFE if code >= 0x7F}  # json.dumps escapes the C0 ones
TRACEBACK_ESCAPES = {code: escape for code, escape in TEXT_ESCAPES.items() if code != 0x0A}


def escape_text(text: str) -> str:
    """``text`` with every UNSAFE character written as an escape (a message of the text format)."""
    return text.translate(TEXT_ESCAPES)


def serving(handler):
    """The log lines of this context are about ``handler``'s request (it has ``request_id`` and ``log_fields()``)."""
    _REQUEST.set(weakref.ref(handler))


def _request_fields() -> dict:
    ref = _REQUEST.get()
    handler = ref() if ref is not None else None
    if handler is None:
        return {}
    try:
        return handler.log_fields()
    except Exception:  # a half-built handler: its id at least
        return {"request_id": getattr(handler, "request_id", "")}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record):
        record.message = escape_text(record.message)
        return super().formatMessage(record)

    def formatException(self, exc_info):
        # a traceback keeps its line feeds (its lines do not look like log lines); nothing else unsafe stays raw
        return super().formatException(exc_info).translate(TRACEBACK_ESCAPES)

    def format(self, record):
        line = super().format(record)
        request_id = _request_fields().get("request_id")
        return f"{line} [request {request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", "client", "user", "collection", ...}`` per line; an
    access line adds ``method``, ``path``, ``endpoint``, ``status`` and ``duration_ms``; a failure its
    ``exception``."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_request_fields())
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str).translate(JSON_ESCAPES)


def configure_logging(level: str, log_format: str = "text"):
    """``level``: a logging level name (DEBUG, INFO...); ``log_format``: text or json."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
