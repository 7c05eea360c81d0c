"""make_app(ctx): the one place where routes and dependencies are wired together."""

import logging

import tornado.web

from backup_repository.http import auth, collections, health, metrics
from backup_repository.http.base import NotFoundHandler


def make_app(ctx) -> tornado.web.Application:
    return _application(ctx, [
        *health.routes(ctx),
        *auth.routes(ctx),
        *collections.routes(ctx),
        *metrics.routes(ctx),
    ])


def make_probe_app(ctx) -> tornado.web.Application:
    """The --probe-listen application: /health and a /ready that needs no key (docs/kubernetes.md#probes)."""
    return _application(ctx, health.probe_routes(ctx))


def make_metrics_app(ctx) -> tornado.web.Application:
    """The --metrics-listen application: /metrics only (docs/monitoring.md)."""
    return _application(ctx, metrics.listener_routes(ctx))


def _application(ctx, handlers) -> tornado.web.Application:
    """Every listener's application: JSON errors for unknown paths, no compression, one access-log line and the
    metrics of each request."""
    return tornado.web.Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        compress_response=False,
        log_function=log_request,
        xsrf_cookies=False,
    )


access_log = logging.getLogger("backup_repository.access")


def endpoint_name(handler: tornado.web.RequestHandler) -> str:
    """The route that answered, from the handler's class (``UploadHandler`` -> ``upload``): a bounded set of names,
    never the request's path."""
    name = type(handler).__name__.removesuffix("Handler")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_") or "unknown"


def log_request(handler: tornado.web.RequestHandler):
    """One line per request, and its metrics. The query string is left out: it may carry a token (?token=) or a
    code (?code=)."""
    status = handler.get_status()
    endpoint = endpoint_name(handler)
    seconds = handler.request.request_time()
    ctx = getattr(handler, "ctx", None)
    if ctx is not None:
        ctx.metrics.request_done(endpoint, status, seconds)
    level = logging.INFO if status < 500 else logging.ERROR
    address = getattr(handler, "client_ip", None) or handler.request.remote_ip
    fields = {"method": handler.request.method, "path": handler.request.path, "endpoint": endpoint,
              "status": status, "duration_ms": round(1000.0 * seconds, 1)}
    access_log.log(level, "%d %s %s (%s) %.1fms", status, handler.request.method, handler.request.path,
                   address, 1000.0 * seconds, extra={"fields": fields})
