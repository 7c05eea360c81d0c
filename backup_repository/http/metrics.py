"""``GET /metrics`` (docs/monitoring.md): Prometheus' text format, never public by default — on --listen only with
--metrics-token (``Authorization: Bearer <token>``), on --metrics-listen with the token too when one is set."""

import hmac

from backup_repository.domain.errors import Unauthenticated
from backup_repository.http.base import BaseHandler

INVALID_TOKEN = "metrics token invalid: send it as 'Authorization: Bearer <token>' (--metrics-token)"


class MetricsHandler(BaseHandler):
    rate_class = "server_health"

    async def get(self):
        expected = self.ctx.settings.metrics_token
        if expected:
            header = self.request.headers.get("Authorization", "")
            given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                self.count_failed_authentication()
                raise Unauthenticated(INVALID_TOKEN)
        body, content_type = self.ctx.metrics.render()
        self.set_header("Content-Type", content_type)
        self.finish(body)


def routes(ctx):
    """/metrics on the main listener: only with a token."""
    return [(r"/metrics", MetricsHandler, {"ctx": ctx})] if ctx.settings.metrics_token else []


def listener_routes(ctx):
    """/metrics on --metrics-listen."""
    return [(r"/metrics", MetricsHandler, {"ctx": ctx})]
