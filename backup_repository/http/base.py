"""The base handler: the JSON envelope, the one error path, and token authentication.

Success: ``{"status": true, "data": {...}}``. Error: ``{"status": false, "error": "...", "data": {}}``.
Authentication failures: ``{"status": false, "code": 401, "message": "...", "data": {}}``.
No traceback ever reaches a client: unexpected exceptions are logged and answered with a generic 500.
"""

import json
import logging
from http import HTTPStatus

import tornado.web

from backup_repository.domain.errors import DomainError, Unauthenticated

log = logging.getLogger(__name__)


class BaseHandler(tornado.web.RequestHandler):
    def initialize(self, ctx):
        self.ctx = ctx
        self.principal = None

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    @property
    def client_ip(self) -> str:
        return self.request.remote_ip or ""

    # --- responses ------------------------------------------------------------------------------
    def send_json(self, status: int, body: dict):
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False))

    def ok(self, data: dict, status: int = 200):
        self.send_json(status, {"status": True, "data": data})

    def fail(self, status: int, message: str, data: dict = None):
        self.send_json(status, {"status": False, "error": message, "data": data or {}})

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, Unauthenticated):
            self.set_status(401)
            self.finish(json.dumps({"status": False, "code": 401, "message": exc.message, "data": {}}))
        elif isinstance(exc, DomainError):
            self.set_status(exc.status)
            self.finish(json.dumps({"status": False, "error": exc.message, "data": {}}))
        elif isinstance(exc, tornado.web.HTTPError):
            self.finish(json.dumps({"status": False, "error": _reason(status_code, exc), "data": {}}))
        else:
            self.finish(json.dumps({"status": False, "error": "internal server error", "data": {}}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, DomainError):
            log.debug("%s %s -> %d %s", self.request.method, self.request.path, value.status, value.message)
        else:
            super().log_exception(typ, value, tb)

    # --- authentication -------------------------------------------------------------------------
    def request_token(self) -> str:
        """The token from ``Authorization: Bearer``, ``?token=`` or the ``jwt`` cookie, in that order."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return self.get_query_argument("token", "") or self.get_cookie("jwt", "") or ""

    async def authenticate(self):
        self.principal = await self.ctx.auth.authenticate(self.request_token(), self.client_ip)


class AuthenticatedHandler(BaseHandler):
    """Every method needs a valid token; it is checked in prepare(), before any body byte is read."""

    async def prepare(self):
        await self.authenticate()


class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404 instead of Tornado's HTML page."""

    def prepare(self):
        self.fail(404, "not found")


def _reason(status_code: int, exc: tornado.web.HTTPError) -> str:
    if exc.log_message and status_code < 500 and "%" not in exc.log_message:
        return exc.log_message
    try:
        return HTTPStatus(status_code).phrase.lower()
    except ValueError:
        return "error"
