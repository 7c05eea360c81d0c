"""The in-process HTTP tier: the real application, served inside the test's own process.

``api`` is what tests/integration's ``api`` is, without the process: ``AppContext.open`` on settings parsed from
the flags a test server gets (SQLite and a local directory in temporary directories, the example configuration
and that of collections_config.py), ``make_app``, and the server's own HTTP/1 connection (http/connection.py)
listening on a loopback port of the test's event loop; requests go over that socket through Tornado's HTTP client.
Nothing is mocked, and a test takes milliseconds (a login's argon2 check aside), so a change to how a handler
turns results and domain errors into answers (docs/api.md) is checked in seconds.

The background work of ``AppContext.start()`` (configuration watch, janitor, verification) is not started. What
needs a process — flags and environment, signals and the graceful stop, logs, other databases and stores, curl and
gpg — stays in tests/integration.
"""

import asyncio
import json as jsonlib

import pytest
import tornado.httpclient
import tornado.netutil

from backup_repository.app import make_app
from backup_repository.cli import parse_settings
from backup_repository.context import AppContext
from backup_repository.http.connection import HTTPServer
from backup_repository.server import MAX_HEADER_BYTES, READ_CHUNK
from tests.conftest import server_flags
from tests.integration.collections_config import write_collections_config
from tests.support import ApiClient


class Response:
    """Tornado's answer under the names of a ``requests`` answer, so that tests/support.py's helpers
    (``assert_error``, ``ApiClient.login``) read both."""

    def __init__(self, answer: tornado.httpclient.HTTPResponse):
        self.status_code = answer.code
        self.headers = answer.headers
        self.content = answer.body or b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.content)


class InProcessServer(ApiClient):
    """The application on a loopback port of ``runner``'s event loop; ``request()`` runs that loop until the
    answer is in. Redirects are not followed."""

    def __init__(self, runner: asyncio.Runner, ctx: AppContext, server: HTTPServer, port: int, backend):
        self.runner, self.ctx, self.server, self.backend = runner, ctx, server, backend
        self.url = f"http://127.0.0.1:{port}"
        self.client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        self.issued_tokens = []

    @classmethod
    async def open(cls, runner, settings, backend) -> "InProcessServer":
        ctx = await AppContext.open(settings)
        # as server.serve() builds the main listener
        server = HTTPServer(make_app(ctx), xheaders=False, chunk_size=READ_CHUNK, max_buffer_size=4 * READ_CHUNK,
                            idle_connection_timeout=settings.http_idle_timeout, max_header_size=MAX_HEADER_BYTES)
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        server.add_sockets(sockets)
        return cls(runner, ctx, server, sockets[0].getsockname()[1], backend)

    async def close(self):
        self.server.stop()
        await self.server.close_all_connections()
        self.client.close()
        await self.ctx.close()

    def request(self, method, path, token=None, *, data=None, json=None, headers=None, **options):
        """``data``: the body (bytes or str); ``json``: a body to send as JSON; ``options``: more of Tornado's
        HTTPRequest arguments."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = jsonlib.dumps(json)
            headers.setdefault("Content-Type", "application/json")
        return self.runner.run(self.fetch(method, path, headers=headers, body=data, **options))

    async def fetch(self, method, path, **options) -> Response:
        """The answer to one request, on this loop (``options``: Tornado's HTTPRequest arguments)."""
        answer = await self.client.fetch(self.url + path, method=method, raise_error=False, follow_redirects=False,
                                         allow_nonstandard_methods=True, decompress_response=False,
                                         request_timeout=30, **options)
        return Response(answer)


@pytest.fixture
def config(config):
    """The example configuration plus the users and collections of collections_config.py."""
    write_collections_config(config)
    return config


@pytest.fixture
def extra_flags():
    """More flags for the server, after the usual ones: a test sets them with
    ``@pytest.mark.parametrize("extra_flags", [("--flag=value", ...)])``."""
    return ()


@pytest.fixture
def api(make_backend, config, extra_flags):
    """The application on SQLite and a local store in temporary directories, served in this process."""
    backend = make_backend("sqlite", "local")
    _, settings = parse_settings([*server_flags(config.root), *backend.args, *extra_flags], environ={})
    with asyncio.Runner() as runner:
        server = runner.run(InProcessServer.open(runner, settings, backend))
        try:
            yield server
        finally:
            runner.run(server.close())
