"""Server health (docs/api.md#health): ``/health`` (is the process up) and ``/ready`` (can it serve)."""

import hmac
from typing import Optional

from backup_repository.domain.errors import Forbidden
from backup_repository.health.checks import run_checks
from backup_repository.http.base import BaseHandler
from backup_repository.http.presenters import health as present

INVALID_CODE = (
    "health code invalid. Should be provided withing 'Authorization' header or 'code' query string. "
    "Must match --health-check-code commandline switch value"
)


class HealthHandler(BaseHandler):
    rate_class: Optional[str] = "server_health"
    def get(self):
        self.ok(present.alive())


class ReadyHandler(BaseHandler):
    rate_class = "server_health"
    async def get(self):
        expected = self.ctx.settings.health_check_key
        code = self.request.headers.get("Authorization", "") or self.get_query_argument("code", "")
        if not expected or not hmac.compare_digest(code.encode(), expected.encode()):
            self.count_failed_authentication()
            raise Forbidden(INVALID_CODE)
        self.answer_checks(await run_checks(self.ctx.readiness))


class ProbeReadyHandler(BaseHandler):
    """``GET /ready`` on --probe-listen (docs/kubernetes.md#probes): no key, and only whether the server is ready
    and the names of the checks that failed — never their messages."""

    rate_class = None

    async def prepare(self):  # answers while stopping too: "not ready" takes the pod out of the Service
        self.refuse_unwanted_body()
        self.check_rate("server_health")  # the bounds of the main listener (--rate-server-health-limit)

    async def get(self):
        if self.ctx.stopping:
            self.fail(503, "not ready: stopping", present.probe_not_ready([]))
            return
        results = await run_checks(self.ctx.readiness)
        failed = [result.name for result in results if not result.ok]
        if failed:
            self.fail(503, "not ready: " + ", ".join(failed), present.probe_not_ready(failed))
        else:
            self.ok(present.probe_ready())


class ProbeHealthHandler(HealthHandler):
    """``GET /health`` on --probe-listen: up while stopping too (a liveness probe must not kill the uploads that a
    graceful stop lets finish)."""

    rate_class = None

    async def prepare(self):
        self.refuse_unwanted_body()
        self.check_rate("server_health")


def probe_routes(ctx):
    kwargs = {"ctx": ctx}
    return [
        (r"/health", ProbeHealthHandler, kwargs),
        (r"/ready", ProbeReadyHandler, kwargs),
    ]


def routes(ctx):
    kwargs = {"ctx": ctx}
    return [
        (r"/health", HealthHandler, kwargs),
        (r"/ready", ReadyHandler, kwargs),
    ]
