"""Authentication API (docs/api.md#authentication): login, refresh, whoami, user profiles, sessions and logout."""

from urllib.parse import parse_qs

from backup_repository.domain.access import parse_scope
from backup_repository.domain.errors import BadRequest, TooManyRequests, Unauthenticated
from backup_repository.http.base import AuthenticatedHandler, BaseHandler
from backup_repository.http.presenters import auth as present
from backup_repository.http.presenters import sessions as present_sessions
from backup_repository.services.auth import MISSING_CREDENTIALS
from backup_repository.security.untrusted import TooDeep, load_json

EMPTY_SCOPE = "operationsScope.elements must not be empty; leave operationsScope out for an unscoped token"


def parse_login_body(body: bytes, form_arguments: dict):
    """Return (username, password, scope elements) from a JSON or form body.

    A body that is a JSON object is read as JSON whatever its Content-Type, because ``curl -d '{...}'`` sends
    JSON labelled as a form. Anything unreadable or incomplete is the "missing" error of docs/api.md#login; JSON
    nested deeper than any login needs is a 400.
    """
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Unauthenticated(MISSING_CREDENTIALS) from None
    if text.startswith("{"):
        try:
            fields = load_json(text)
        except TooDeep as exc:
            raise BadRequest(str(exc)) from None
        except ValueError:
            raise Unauthenticated(MISSING_CREDENTIALS) from None
    elif form_arguments:
        fields = {key: values[-1].decode("utf-8", "replace") for key, values in form_arguments.items()}
    else:
        fields = {key: values[-1] for key, values in parse_qs(text).items()}
    if not isinstance(fields, dict):
        raise Unauthenticated(MISSING_CREDENTIALS)
    username, password = fields.get("username"), fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise Unauthenticated(MISSING_CREDENTIALS)
    return username, password, _scope(fields.get("operationsScope"))


def _scope(value) -> tuple:
    """The scope elements of a login; an empty scope is refused: it would silently mean "no restriction"."""
    if value in (None, ""):
        return ()
    try:
        if isinstance(value, str):
            value = load_json(value)
        if isinstance(value, list):  # a bare list of elements is accepted too
            value = {"elements": value}
        if not isinstance(value, dict):
            raise ValueError("must be an object like {\"elements\": [...]}")
        scope = parse_scope(value.get("elements"))
    except ValueError as exc:
        raise BadRequest(f"invalid operationsScope: {exc}") from None
    if not scope:
        raise BadRequest(EMPTY_SCOPE)
    return scope


class LoginHandler(BaseHandler):
    rate_class = "auth"

    async def prepare(self):
        try:
            await super().prepare()
        except TooManyRequests:
            self.ctx.metrics.login("rate_limited")
            raise

    async def post(self):
        username, password, scope = parse_login_body(self.body, self.form_arguments())
        result = await self.ctx.auth.login(username, password, scope, self.client_ip)
        self.ok(present.token(result))


class RefreshHandler(AuthenticatedHandler):
    rate_class = "auth"
    async def get(self):
        result = await self.ctx.auth.refresh(self.principal, self.client_ip)
        self.ok(present.token(result))


class WhoamiHandler(AuthenticatedHandler):
    async def get(self):
        self.ok(present.whoami(self.principal))


class UserHandler(AuthenticatedHandler):
    async def get(self, name):
        user = self.ctx.auth.view_user(self.principal, name)
        self.ok(present.profile(user))


class SessionsHandler(AuthenticatedHandler):
    async def get(self):
        user_name = self.get_query_argument("userName", None)
        sessions = await self.ctx.auth.sessions(self.principal, user_name)
        self.ok(present_sessions.sessions(sessions))


class LogoutHandler(AuthenticatedHandler):
    async def delete(self):
        session_id = self.get_query_argument("sessionId", None)
        revoked = await self.ctx.auth.logout(self.principal, session_id)
        self.ok(present_sessions.revoked(revoked))


def routes(ctx):
    kwargs = {"ctx": ctx}
    return [
        (r"/api/stable/auth/login", LoginHandler, kwargs),
        (r"/api/stable/auth/refresh_token", RefreshHandler, kwargs),
        (r"/api/stable/auth/whoami", WhoamiHandler, kwargs),
        (r"/api/stable/auth/user/([^/]+)", UserHandler, kwargs),
        (r"/api/stable/auth/token", SessionsHandler, kwargs),
        (r"/api/stable/auth/logout", LogoutHandler, kwargs),
    ]
