"""The base handler: the JSON envelope, the one error path, and token authentication.

Success: ``{"status": true, "data": {...}}``. Error: ``{"status": false, "error": "...", "data": {}}``.
Authentication failures: ``{"status": false, "code": 401, "message": "...", "data": {}}``.
No traceback ever reaches a client: every failure is answered through the one table of http/errors.py.
"""

import json
import math
import time
import uuid
from typing import Optional, cast

import tornado.escape
import tornado.httputil
import tornado.web

from backup_repository.domain.errors import (
    BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthenticated,
)
from backup_repository.http.connection import BodyConnection
from backup_repository.http.errors import answer_for, log_failure
from backup_repository.http.presenters import health as present_health
from backup_repository.logs import serving
from backup_repository.security.addresses import client_address, forwarded_request_id

#: Request bodies of every endpoint but uploads (logins are a few hundred bytes).
BODY_LIMIT = 64 << 10
#: Tornado's own body limit is lifted per request: the handler enforces its limit and answers in JSON.
UNLIMITED_BODY = 1 << 62
TOO_MANY_REQUESTS = "too many requests, retry later"
#: The challenge of every 401 answer, as the Go server sends it.
WWW_AUTHENTICATE = "JWT realm=backup-repository"
NO_BODY = "this endpoint takes no request body"
#: The methods that may carry a body, on the handlers that implement them (login and upload).
BODY_METHODS = ("POST",)
STOPPING = "the server is shutting down; retry in a moment"
CHECKS_FAILED = "one of checks failed"


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Every handler: rate limit and body limit in ``prepare()``, the JSON envelope, the one error path.

    Bodies are streamed into a bounded buffer (``self.body``) so that an oversized one is answered with a JSON 413
    before it is read, instead of Tornado closing the connection.
    """

    #: The rate-limit class of the endpoint (security/ratelimit.py), or None for no request-rate limit.
    rate_class: Optional[str] = "default"
    body_limit = BODY_LIMIT
    #: The X-RateLimit-* headers of the budget this request drew from (kept when an error answer clears headers).
    _rate_headers: tuple = ()

    def initialize(self, ctx):
        self.ctx = ctx
        self.principal = None
        self._body = bytearray()
        self._client_ip = None
        ctx.requests_in_flight.add(self)  # a graceful stop waits for these
        self.request_id = forwarded_request_id(self.request.remote_ip or "", self.request.headers,
                                               ctx.settings.trusted_proxies) or uuid.uuid4().hex
        self.set_header("X-Request-Id", self.request_id)
        serving(self)  # the log lines of this request carry its id (logs.py)

    def log_fields(self) -> dict:
        """What each log line about this request says of it (docs/monitoring.md#logs)."""
        fields = {"request_id": self.request_id, "client": self.client_ip}
        if self.principal is not None:
            fields["user"] = self.principal.actor.name
        collection = self.collection_in_path()
        if collection:
            fields["collection"] = collection
        return fields

    def collection_in_path(self) -> str:
        """The collection id of a collection route ('' elsewhere), as the client wrote it."""
        path_args = getattr(self, "path_args", None)
        return path_args[0][:200] if path_args and "/collection/" in self.request.path else ""

    def on_finish(self):
        self.ctx.requests_in_flight.discard(self)

    def on_connection_close(self):
        self.ctx.requests_in_flight.discard(self)
        super().on_connection_close()

    def refuse_when_stopping(self):
        if self.ctx.stopping:
            raise ServiceUnavailable(STOPPING, retry_after=5)

    async def prepare(self):
        self.refuse_unwanted_body()
        self.refuse_when_stopping()
        self.body_connection.set_max_body_size(UNLIMITED_BODY)
        self.body_connection.set_body_timeout(self.ctx.settings.http_idle_timeout)
        self.check_rate()
        declared = self.request.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.body_limit:
            raise PayloadTooLarge(f"the request body is larger than {self.body_limit} bytes")

    def refuse_unwanted_body(self, refused=None):
        """Only a method that reads a body may have one (docs/api.md#request-bodies): anywhere else a declared or
        chunked body is refused before a byte of it is read (405 for a method the endpoint does not have, 400
        otherwise), and the connection closes after the answer. Where a body is read, a chunked one that breaks
        the chunk rule of http/connection.py is refused through ``refused`` (default: ``stop_early``)."""
        method = self.request.method
        if method in BODY_METHODS and method in self.allowed_methods():
            self.body_connection.on_body_refused(refused or self.stop_early)
            return
        if not has_body(self.request.headers):
            return
        if method not in self.allowed_methods():
            raise tornado.web.HTTPError(405)
        raise BadRequest(NO_BODY)

    def check_rate(self, rate_class: Optional[str] = None, shown: bool = True):
        """Draw one request from the client's budget of ``rate_class`` (default: the endpoint's); 429 when it is
        spent. The answer shows the budget in the ``X-RateLimit-*`` headers (docs/api.md#rate-limits); a draw with
        ``shown=False`` (the login budget a failed authentication takes from) shows it only when it refuses."""
        rate_class = rate_class or self.rate_class
        if rate_class is None:
            return
        budget = self.ctx.rate_limits.hit(rate_class, self.client_ip)
        if shown or not budget.allowed:
            self._rate_headers = rate_limit_headers(budget, time.time())
            self.set_rate_limit_headers()
        if not budget.allowed:
            self.ctx.metrics.rate_limited(rate_class)
            refusal = TooManyRequests(TOO_MANY_REQUESTS, max(1, math.ceil(budget.retry_after)))
            # the log says whose budget: an IPv6 client's is its network's (security/ratelimit.py)
            refusal.detail = f"the {rate_class} budget of {self.ctx.rate_limits.key(self.client_ip)} is spent"
            raise refusal

    def data_received(self, chunk: bytes):
        if self._finished:
            return None
        self.ctx.metrics.bytes_received(len(chunk))
        if len(self._body) + len(chunk) > self.body_limit:
            self.stop_early(PayloadTooLarge(f"the request body is larger than {self.body_limit} bytes"))
            return None
        self._body += chunk
        return None

    def stop_early(self, exc: BaseException):
        """Answer now, while the body is still arriving; the handler's method will not run.

        Tornado closes the connection once the answer is sent (the rest of the body is never read). The body
        future is failed here so that the request does not wait for a body nobody will read.
        """
        if not self._finished:
            self.send_error(getattr(exc, "status", 500), exc_info=(type(exc), exc, None))
        tornado.web.RequestHandler.on_connection_close(self)

    def write(self, chunk):
        data = tornado.escape.utf8(chunk) if isinstance(chunk, str) else chunk
        super().write(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.ctx.metrics.bytes_sent(len(data))

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def form_arguments(self) -> dict:
        """The fields of a form body (urlencoded or multipart), as Tornado would have parsed them."""
        arguments: dict = {}
        files: dict = {}
        try:
            tornado.httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""), self.body, arguments, files, self.request.headers
            )
        except tornado.httputil.HTTPInputError:  # e.g. a Content-Encoding: the body is not a readable form
            return {}
        return arguments

    @property
    def body_connection(self) -> BodyConnection:
        """This request's connection: always http/connection.BodyConnection, which the server's HTTPServer makes
        (bounded bodies, the chunk rule, body timeouts)."""
        return cast(BodyConnection, self.request.connection)

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        if getattr(self, "request_id", None):  # an error answer starts the headers again
            self.set_header("X-Request-Id", self.request_id)
        self.set_rate_limit_headers()

    def set_rate_limit_headers(self):
        for name, value in self._rate_headers:
            self.set_header(name, value)

    @property
    def client_ip(self) -> str:
        """The socket's peer, or the address a trusted proxy forwarded (security/addresses.py)."""
        if self._client_ip is None:
            self._client_ip = client_address(
                self.request.remote_ip or "", self.request.headers, self.ctx.settings.trusted_proxies
            )
        return self._client_ip

    # --- responses ------------------------------------------------------------------------------
    def send_json(self, status: int, body: dict):
        if self._finished:
            return
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False))

    def ok(self, data: dict, status: int = 200):
        self.send_json(status, {"status": True, "data": data})

    def fail(self, status: int, message: str, data: Optional[dict] = None):
        self.send_json(status, {"status": False, "error": message, "data": data or {}})

    def answer_checks(self, results: list):
        """Health checks' answer (/ready, collection health): 200 when every check passed, else 500 ``one of checks
        failed`` with the same data — an answer on purpose, not a server error (docs/api.md#health)."""
        data = present_health.health(results)
        if all(result.ok for result in results):
            self.ok(data)
        else:
            self.fail(500, CHECKS_FAILED, data)

    def allowed_methods(self) -> list:
        """The methods this handler implements (for the ``Allow`` header of a 405)."""
        base = tornado.web.RequestHandler
        return [method for method in self.SUPPORTED_METHODS
                if getattr(type(self), method.lower(), None) is not getattr(base, method.lower(), None)]

    def write_error(self, status_code, **kwargs):
        answer = answer_for(kwargs.get("exc_info", (None, None, None))[1], status_code)
        if answer.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if answer.status == 401:  # RFC 9110 §11.6.1: every 401 names its scheme; the Go server's value
            self.set_header("WWW-Authenticate", WWW_AUTHENTICATE)
        if answer.retry_after is not None:
            self.set_header("Retry-After", str(answer.retry_after))
        self.set_status(answer.status)
        self.finish(json.dumps(answer.body, ensure_ascii=False))

    def log_exception(self, typ, value, tb):
        log_failure(self.request.method, self.request.path, value, (typ, value, tb))

    # --- authentication -------------------------------------------------------------------------
    def request_token(self) -> str:
        """The token from ``Authorization: Bearer``, ``?token=`` or the ``jwt`` cookie, in that order."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return self.get_query_argument("token", "") or self.get_cookie("jwt", "") or ""

    async def authenticate(self):
        try:
            self.principal = await self.ctx.auth.authenticate(self.request_token(), self.client_ip)
        except Unauthenticated:
            self.count_failed_authentication()
            raise

    def count_failed_authentication(self):
        """A failed authentication anywhere (token, health code) counts against the client's login budget
        (``--rate-auth-limit``): past it the answer is 429 instead of 401/403 (docs/security.md)."""
        self.check_rate("auth", shown=False)


class AuthenticatedHandler(BaseHandler):
    """Every method needs a valid token; it is checked in prepare(), before any body byte is read."""

    async def prepare(self):
        await super().prepare()
        await self.authenticate()


class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404 instead of Tornado's HTML page — except a known route written with a trailing
    slash, which is redirected to the route without it, as the Go server does (docs/api.md): 301 for GET and HEAD,
    308 (the method and body kept) otherwise."""

    def refuse_unwanted_body(self, refused=None):
        self.redirect_a_trailing_slash()
        raise NotFound("not found")  # whatever the method and the body: nothing is here, no byte of it is read

    async def prepare(self):
        await super().prepare()
        raise NotFound("not found")

    def redirect_a_trailing_slash(self):
        path = self.request.path
        if not path.endswith("/") or path == "/":
            return
        bare = path.rstrip("/")
        probe = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine(self.request.method, bare, "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": self.request.host}))
        if not any(rule.matcher.match(probe) is not None for rule in self.application.wildcard_router.rules):
            return
        query = self.request.query
        status = 301 if self.request.method in ("GET", "HEAD") else 308
        self.redirect(bare + (f"?{query}" if query else ""), status=status)
        raise tornado.web.Finish()


def rate_limit_headers(budget, now: float) -> tuple:
    """The ``X-RateLimit-*`` headers of an answer whose request drew from ``budget`` (security/ratelimit.Budget) at
    Unix time ``now``. ``Limit`` and ``Remaining`` mean what the Go server's limiter (gin-limiter) sends: the
    requests a period allows, and the whole requests left after this one. ``Reset`` (the Go server has none) is the
    Unix time, in whole seconds, at which the budget is full again."""
    return (
        ("X-RateLimit-Limit", str(budget.limit)),
        ("X-RateLimit-Remaining", str(budget.remaining)),
        ("X-RateLimit-Reset", str(math.ceil(now + budget.full_in))),
    )


def has_body(headers) -> bool:
    """Whether a request declares a body: chunked, or a Content-Length other than 0 (a malformed one too)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return True
    length = headers.get("Content-Length")
    return length is not None and length.strip() != "0"
