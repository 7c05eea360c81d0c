"""Collections API (docs/api.md#collections): upload, download, version listing, collection listing and health."""

import asyncio
import logging
import re
import socket
import struct
from contextlib import aclosing
from typing import Optional

import tornado.iostream
import tornado.web

from backup_repository.domain.errors import DomainError, Forbidden, RangeNotSatisfiable
from backup_repository.failures import StorageError
from backup_repository.http.base import UNLIMITED_BODY, AuthenticatedHandler, BaseHandler
from backup_repository.http.errors import log_failure
from backup_repository.http.presenters import collections as present_collections
from backup_repository.http.presenters import versions as present_versions
from backup_repository.services.uploads import Upload, UploadRequest

log = logging.getLogger(__name__)


class VersionsHandler(BaseHandler):
    """``.../collection/{id}/version``: ``GET`` lists the versions, ascending by number; ``POST`` uploads one.

    An upload is checked before its first body byte is read (in ``prepare``), then streams into the store. The
    upload itself (services/uploads.Upload) owns its deadlines, its clean-up and its outcome; this handler only
    hands it Tornado's callbacks and answers.
    """

    upload: Optional[Upload] = None
    _refusal_counted = False

    async def get(self, collection_id):
        versions = await self.ctx.collections.versions(self.principal, collection_id)
        self.ok(present_versions.versions(versions))

    async def prepare(self):
        if self.request.method != "POST":
            await super().prepare()
            await self.authenticate()
            return
        self.refuse_unwanted_body(refused=self._chunks_refused)
        self.refuse_when_stopping()
        # uploads: no request-rate limit (the original had none) but a bound on concurrent uploads per user;
        # the body is limited by the collection's budget, counted while streaming
        self.body_connection.set_max_body_size(UNLIMITED_BODY)
        await self.authenticate()
        headers = self.request.headers
        declared = None
        if "chunked" not in headers.get("Transfer-Encoding", "").lower() and headers.get("Content-Length"):
            try:
                declared = int(headers["Content-Length"])
            except ValueError:
                declared = None
        request = UploadRequest(self.path_args[0], headers.get("Content-Type", ""), declared)
        self.upload = await self.ctx.uploads.begin(self.principal, request, on_failed=self._failed)
        # a last resort behind the upload's own deadline (408)
        self.body_connection.set_body_timeout(self.upload.limits.total + 10)

    def data_received(self, chunk: bytes):
        if self.upload is None:
            return super().data_received(chunk)
        self.ctx.metrics.bytes_received(len(chunk))
        return self.upload.feed(chunk)

    async def post(self, collection_id):
        if self.upload is None:
            raise RuntimeError("an upload's POST without the upload prepare() began")
        version = await self.upload.complete()
        if version is not None:  # None: it had failed, and was answered then
            self.ok(present_versions.uploaded(version))

    def _chunks_refused(self, exc: BaseException):
        """The chunk rule of http/connection.py refused the body: the upload fails like any other mid-body."""
        if self.upload is not None:
            self.upload.fail(exc)
        else:
            self.stop_early(exc)

    def _failed(self, exc: BaseException):
        """The upload failed mid-body and left nothing: answer, and let Tornado close the connection."""
        if not isinstance(exc, DomainError):
            log_failure(self.request.method, self.request.path, exc)
        if self._finished or self.body_connection.stream is None or self.body_connection.stream.closed():
            return
        self.stop_early(exc)

    def on_connection_close(self):
        super().on_connection_close()
        if self.upload is not None:
            self.upload.client_gone()
        elif self.request.method == "POST" and not self._finished:
            self._refused_before_upload(None)

    def write_error(self, status_code, **kwargs):
        if self.request.method == "POST" and self.upload is None:
            self._refused_before_upload(kwargs.get("exc_info", (None, None, None))[1])
        super().write_error(status_code, **kwargs)

    def _refused_before_upload(self, exc):
        """Counted once: ``exc`` refused the upload before it began (None: the client went away first)."""
        if not self._refusal_counted:
            self._refusal_counted = True
            self.ctx.uploads.refused(exc, self.collection_in_path(), self.principal is not None)


class DownloadHandler(AuthenticatedHandler):
    """``GET|HEAD .../collection/{id}/version/{latest|N|vN}``: streamed, with ETag and single byte ranges.

    From a local store the body goes from the file to the socket by sendfile in a transfer thread (the event loop
    only waits for it); from S3 or GCS it is read in chunks and written through Tornado with back-pressure.
    """

    _gone: Optional[asyncio.Future] = None  # resolved when the connection closes
    _sent = 0  # body bytes sent (counted by the sending thread while it runs; read here once it is done)

    async def get(self, collection_id, reference):
        await self._send(collection_id, reference, with_body=True)

    async def head(self, collection_id, reference):
        await self._send(collection_id, reference, with_body=False)

    async def _send(self, collection_id, reference, with_body: bool):
        download = await self.ctx.collections.download(self.principal, collection_id, reference)
        version = download.version
        etag = f'"{version.sha256}"'
        wanted = self.request.headers.get("Range")
        if_range = self.request.headers.get("If-Range")
        if wanted and if_range and if_range.strip() != etag:
            wanted = None  # the client holds a different version: send it whole
        span = parse_range(wanted, version.size) if wanted else None

        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{_quoted(version.filename)}"')
        self.set_header("ETag", etag)
        self.set_header("Accept-Ranges", "bytes")
        start, end = span if span is not None else (0, version.size)
        if span is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end - 1}/{version.size}")
        self.set_header("Content-Length", str(end - start))
        if not with_body or start == end:
            self.finish()
            return

        # opened before the headers go out, so that a missing object is still answered with a 503
        file = await self.ctx.collections.open_file(download, start, end) if self._plain_tcp() else None
        self._gone = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.ctx.settings.http_download_timeout):
                if file is not None:
                    await self._send_file(file, start, end)
                else:
                    await self._stream(download, start, end)
        except (tornado.iostream.StreamClosedError, ConnectionError):
            log.info("download of %s v%d stopped: the connection closed after %d of %d bytes", collection_id,
                     version.number, self._sent, end - start)
            self._reset_connection()  # when the sending thread saw it first, Tornado has not closed it yet
            return
        except TimeoutError:
            log.warning("download of %s v%d ended by --http-download-timeout (%gs) after %d of %d bytes",
                        collection_id, version.number, self.ctx.settings.http_download_timeout, self._sent,
                        end - start)
            self._reset_connection()
            return
        except StorageError as exc:
            if file is None:
                raise  # as before: the one error path (the body is cut short; Tornado closes the connection)
            log.error("download of %s v%d failed after %d of %d bytes: %s", collection_id, version.number,
                      self._sent, end - start, exc)
            self._reset_connection()  # the short body tells the client it failed
            return
        finally:
            if file is not None:
                file.close()
        self.finish()

    def _plain_tcp(self) -> bool:
        """Whether bytes written to the connection's socket reach the client as they are (not through TLS)."""
        stream = self.body_connection.stream
        return isinstance(stream, tornado.iostream.IOStream) and not isinstance(stream, tornado.iostream.SSLIOStream)

    async def _stream(self, download, start: int, end: int):
        """Chunks read by a transfer thread, written through Tornado; the next is read while this one is sent."""
        async with aclosing(self.ctx.collections.read(download, start, end)) as chunks:
            async for chunk in chunks:
                self.write(chunk)
                await self._flushed()
                self._sent += len(chunk)

    async def _send_file(self, file, start: int, end: int):
        """The headers through Tornado, then the body by the store's sending thread, straight to the socket.

        Tornado's buffer is empty once the headers are flushed, and nothing writes to the connection until the
        thread is done: on success, on a closed connection, on --http-download-timeout (the cancel stops it).
        """
        await self._flushed()
        stream = self.body_connection.stream
        if stream.closed():
            raise tornado.iostream.StreamClosedError()
        sending = asyncio.ensure_future(file.send(stream.socket, start, end, self._count_sent))
        try:
            await asyncio.wait((sending, self._closed()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sending.done():  # the connection closed, or the timeout cancelled us: stop the thread
                sending.cancel()
                await asyncio.wait((sending,))
            # Tornado checks the body against Content-Length as it passes through its write() (finish() fails on a
            # shortfall); these bytes went around it, so they are counted here, once the thread is done
            connection = self.body_connection
            if connection._expected_content_remaining is not None:
                connection._expected_content_remaining -= self._sent
        if sending.cancelled():
            raise tornado.iostream.StreamClosedError()
        sending.result()

    def _count_sent(self, count: int):
        """Called by the sending thread: nothing on the event loop reads ``_sent`` until the thread is done."""
        self._sent += count
        self.ctx.metrics.bytes_sent(count)

    def _closed(self) -> asyncio.Future:
        """The future that the connection's close resolves (made when the download began)."""
        if self._gone is None:
            raise RuntimeError("the download has not begun")
        return self._gone

    async def _flushed(self):
        """``await self.flush()``, but also return (with StreamClosedError) when the connection closes meanwhile:
        Tornado may drop the flush's future unresolved when a connection closes under a pending write."""
        flushing = asyncio.ensure_future(self.flush())
        await asyncio.wait((flushing, self._closed()), return_when=asyncio.FIRST_COMPLETED)
        if not flushing.done():
            flushing.cancel()
            raise tornado.iostream.StreamClosedError()
        flushing.result()

    def on_connection_close(self):
        super().on_connection_close()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _reset_connection(self):
        """Close at once, dropping what the kernel still buffers for a slow reader (TCP reset, not a slow FIN)."""
        stream = self.body_connection.stream
        if stream is None or stream.closed():
            return
        try:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        stream.close()

    def write_error(self, status_code, **kwargs):
        if self._headers_written:
            return  # the body is already under way: the short Content-Length tells the client it failed
        self.set_header("Content-Type", "application/json; charset=utf-8")
        for name in ("Content-Disposition", "ETag", "Accept-Ranges", "Content-Range", "Content-Length"):
            self.clear_header(name)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RangeNotSatisfiable):
            self.set_header("Content-Range", f"bytes */{exc.size}")
        super().write_error(status_code, **kwargs)


class CollectionsHandler(AuthenticatedHandler):
    """``GET /api/stable/repository/collection``: the collections the caller may list."""

    async def get(self):
        self.ok(present_collections.collections(await self.ctx.collections.listing(self.principal)))


class CollectionHealthHandler(BaseHandler):
    """``GET /api/stable/repository/collection/{id}/health``: no token; the collection's code when it has one."""

    rate_class = "collection_health"

    async def get(self, collection_id):
        code = self.get_query_argument("code", "") or self.request.headers.get("Authorization", "")
        try:
            results = await self.ctx.collections.health(collection_id, code)
        except Forbidden:  # a wrong code
            self.count_failed_authentication()
            raise
        self.answer_checks(results)


_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
#: Offsets longer than this are beyond any object (and beyond what int() may parse from a header).
MAX_OFFSET_DIGITS = 18


def parse_range(header: str, size: int) -> Optional[tuple]:
    """(start, end exclusive) of a single ``Range: bytes=...`` request; None to send the whole object.

    Multiple ranges and malformed headers are ignored (the whole object is sent, as RFC 9110 allows); a range
    that starts beyond the end raises RangeNotSatisfiable (416). Offsets of any length are understood: one of
    thousands of digits is simply beyond the end (docs/api.md#downloads).
    """
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        length = _offset(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size
    start = _offset(first)
    last_byte = _offset(last) if last else None
    if last_byte is not None and last_byte < start:
        return None
    end = size if last_byte is None else min(last_byte + 1, size)
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _offset(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_OFFSET_DIGITS else 10 ** MAX_OFFSET_DIGITS


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable("requested range not satisfiable", size=size)


def _quoted(filename: str) -> str:
    return filename.replace("\\", "\\\\").replace('"', '\\"')


def routes(ctx):
    kwargs = {"ctx": ctx}
    collection = r"/api/(?:alpha|stable)/repository/collection/([^/]+)"
    return [
        (r"/api/stable/repository/collection/?", CollectionsHandler, kwargs),
        (rf"{collection}/version/?", VersionsHandler, kwargs),
        (rf"{collection}/version/([^/]+)", DownloadHandler, kwargs),
        (r"/api/stable/repository/collection/([^/]+)/health", CollectionHealthHandler, kwargs),
    ]
