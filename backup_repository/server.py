"""run(settings): start the server and stop it gracefully on SIGTERM or SIGINT."""

import asyncio
import logging
import signal
import socket
import sys

import tornado.netutil

from backup_repository import systemd
from backup_repository.app import make_app, make_metrics_app, make_probe_app
from backup_repository.context import AppContext
from backup_repository.failures import StartupError
from backup_repository.http.connection import HTTPServer
from backup_repository.logs import configure_logging
from backup_repository.process import tune_allocator
from backup_repository.settings import LOG_LEVELS

log = logging.getLogger("backup_repository")

#: Bytes read from a socket at once, and the largest piece of a request body handed to a handler.
READ_CHUNK = 1 << 20
#: The request line and headers together (tokens are about 500 bytes).
MAX_HEADER_BYTES = 16 << 10


def run(settings) -> int:
    """Serve until stopped; return the process exit status."""
    configure_logging(LOG_LEVELS[settings.log_level], settings.log_format)
    tune_allocator()
    if not settings.jwt_secret_key:
        print("error: a JWT secret key is required to serve: pass --jwt-secret-key=... or set BR_JWT_SECRET_KEY "
              "(a long random string, for example the output of: openssl rand -base64 32)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0


async def serve(settings) -> int:
    try:
        ctx = await AppContext.open(settings)
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1

    app = make_app(ctx)
    server = HTTPServer(
        app, xheaders=False, chunk_size=READ_CHUNK, max_buffer_size=4 * READ_CHUNK,
        # also the time limit for a request's headers to arrive (slow-header clients are cut off)
        idle_connection_timeout=settings.http_idle_timeout, max_header_size=MAX_HEADER_BYTES,
    )
    host, port = settings.listen
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host or None)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host or "*", port, exc)
        await ctx.close()
        return 1
    server.add_sockets(sockets)
    side_servers = []  # --probe-listen, --metrics-listen
    beside = [(settings.probe_listen, make_probe_app, "--probe-listen", "probes (/health, /ready)"),
              (settings.metrics_listen, make_metrics_app, "--metrics-listen", "/metrics")]
    for address, make, flag, what in beside:
        if address is None:
            continue
        try:
            side_servers.append(listen_beside(make(ctx), address, what, settings.http_idle_timeout))
        except OSError as exc:
            log.error("cannot listen on %s:%d (%s): %s", address[0] or "*", address[1], flag, exc)
            for side in [server, *side_servers]:
                side.stop()
            await ctx.close()
            return 1
    ctx.start()
    for sock in sockets:
        address = sock.getsockname()
        shown = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
        print(f"backup-repository listening on http://{shown}:{address[1]}", flush=True)
    if not host:
        print(f"backup-repository serves every interface; locally: http://127.0.0.1:{sockets[0].getsockname()[1]}",
              flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    systemd.notify(f"READY=1\nSTATUS=serving on port {sockets[0].getsockname()[1]}")
    await stopping.wait()
    systemd.notify("STOPPING=1\nSTATUS=stopping: finishing requests in flight")

    await drain(server, ctx, settings.shutdown_grace)
    for side in side_servers:
        side.stop()
    await ctx.close()
    log.info("stopped")
    return 0


#: The longest a probe or metrics connection may wait for a request or its headers: their clients (kubelet,
#: Prometheus) send a request at once. A shorter --http-idle-timeout holds there too.
SIDE_IDLE_TIMEOUT = 10.0


def listen_beside(app, address: tuple, what: str, idle_timeout: float = SIDE_IDLE_TIMEOUT):
    """A small HTTP server for ``app`` on ``address`` (probes, metrics); OSError when the address is taken. A
    connection without a request, or slow headers, are cut after ``idle_timeout`` (--http-idle-timeout) or
    SIDE_IDLE_TIMEOUT, whichever is shorter: never later than on the main listener."""
    host, port = address
    sockets = tornado.netutil.bind_sockets(port, address=host or None)
    side = HTTPServer(app, idle_connection_timeout=min(idle_timeout, SIDE_IDLE_TIMEOUT),
                      max_header_size=MAX_HEADER_BYTES)
    side.add_sockets(sockets)
    for sock in sockets:
        print(f"backup-repository {what} on port {sock.getsockname()[1]}", flush=True)
    return side


async def drain(server, ctx, grace: float):
    """Stop accepting connections, let requests in flight finish for up to ``grace`` seconds, then close the rest
    (unfinished uploads are then aborted by ``ctx.close()``: nothing partial stays)."""
    server.stop()
    ctx.stopping = True  # new requests on kept-alive connections get 503 and go elsewhere
    running = len(ctx.requests_in_flight)
    log.info("stopping: no new connections; waiting up to %gs for %d request(s) in flight", grace, running)
    deadline = asyncio.get_running_loop().time() + grace
    while ctx.requests_in_flight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if ctx.requests_in_flight:
        log.warning("%d request(s) still running after %gs; closing them", len(ctx.requests_in_flight), grace)
    try:
        await asyncio.wait_for(server.close_all_connections(), 5.0)
    except asyncio.TimeoutError:
        log.warning("connections did not close within 5s")
