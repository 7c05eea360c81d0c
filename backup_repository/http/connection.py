"""The HTTP/1.1 server under every listener: Tornado's, with three changes to how request bodies are read
(docs/security.md#the-cost-of-a-body).

- **Bodies are received with one copy, in few reads.** Each read lands in the connection's buffer (recv_into) and
  is copied out once (Tornado copies every octet into its read buffer and out again); a short read is followed by
  a short pause, so that a body sent in tiny TCP segments is read in a few hundred pieces a second, not one
  segment at a time.
- **A body nobody wants is never parsed.** When the answer is complete before the body was read (a request refused
  in ``prepare()``: a body sent to an endpoint that takes none, a bad token, a full collection; or mid-body: over
  the size budget, not OpenPGP), no more of the body reaches the handler and no further request is read from the
  connection. It is closed the way Apache and nginx close such a connection ("lingering close"): the server stops
  sending (FIN), then reads and drops what the client still sends for up to LINGER_SECONDS (at most LINGER_OCTETS),
  then closes. Closed at once, the socket would answer the unread body with a reset, which can destroy the answer
  before a client that sends its whole body before reading (most do) has read it.
- **Chunked bodies are decoded in bulk, and their chunk count is bounded.** Tornado takes several Python steps per
  chunk (a read for the size line, one for the data, one for the CRLF: ~10 us each), so a body sent in 1-octet
  chunks cost ~0.7 s of the event loop per 64 KiB. Here each network read is parsed in one pass (a C ``find`` per
  size line, the data sliced, not copied) and handed on in pieces of up to ``chunk_size``. And past
  ``FREE_CHUNKS`` chunks, a body must average ``MIN_CHUNK_AVERAGE`` octets per chunk: a client decides how many
  bytes it sends, not how many Python steps each byte costs. Real clients send kilobytes per chunk (curl 64 KiB,
  Go's net/http what each read of the pipe gave, a proxy at least a TCP segment); a body below the rule is refused
  with 400 the moment it breaks it. Reads take what the socket has, so the end of a body may come with the start
  of a pipelined request: that request is dropped and the connection closed after the answer, which HTTP allows
  (a client retries a pipelined request a closed connection did not answer; curl and Go do not pipeline).
"""

import asyncio
import logging
import re
import socket
from typing import Optional, cast

import tornado.httpserver
from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection

from backup_repository.domain.errors import BadRequest

log = logging.getLogger(__name__)

#: Chunks any body may have before the average rule applies (an empty body, a login, a slow start).
FREE_CHUNKS = 256
#: The average chunk size, in octets, a chunked body must keep once it has more than FREE_CHUNKS chunks.
MIN_CHUNK_AVERAGE = 256
#: A chunk-size line: hexadecimal digits (at most 16), no extensions (Tornado has never accepted them either).
CHUNK_SIZE_LINE = re.compile(rb"[0-9a-fA-F]{1,16}")
MAX_SIZE_LINE = 64
#: Give other connections a turn after this many body octets read without waiting for the network.
YIELD_EVERY = 1 << 20
#: A read shorter than this, while more of the body is due, is followed by a pause of SMALL_READ_PAUSE seconds,
#: so that the next read takes in one piece what arrived meanwhile: a body sent in tiny TCP segments costs a few
#: hundred reads a second at most, not one read (a few Python steps) per segment. The socket's buffer holds what
#: arrives during the pause, so a real client loses no throughput.
SMALL_READ = 16 << 10
SMALL_READ_PAUSE = 0.002
#: The lingering close after an answer that left part of the body unread: how long, and how much, the server reads
#: and drops before it closes (a client sending the rest of a large body gets the answer well before that).
LINGER_SECONDS = 3.0
LINGER_OCTETS = 64 << 20
TINY_CHUNKS = (f"the request body arrives in chunks of fewer than {MIN_CHUNK_AVERAGE} bytes on average; send it in "
               "larger chunks")


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server whose connections read bodies as the module docstring says."""

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> None:
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = _ServerConnection(stream, self.conn_params, context)
        self._connections.add(conn)
        conn.start_serving(self)


class _ServerConnection(HTTP1ServerConnection):
    async def _server_request_loop(self, delegate) -> None:
        # Tornado's loop (tornado/http1connection.py), with BodyConnection for each request
        try:
            while True:
                conn = BodyConnection(self.stream, False, self.params, self.context)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    log.error("uncaught exception while serving a connection", exc_info=True)
                    conn.close()
                    return
                if not ret or conn.closes:
                    return  # never read another request from a connection an answer closed
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class BodyConnection(HTTP1Connection):
    """One request on a connection. A handler may call ``on_body_refused(callback)`` in ``prepare()``: a chunked
    body that breaks the chunk rule is then refused through ``callback(BadRequest)`` (the handler's own answer in
    the JSON envelope) instead of Tornado's bare 400."""

    _refuse = None
    _inbox = None  # the buffer bodies are received into
    _declares_body = False
    _unpaced = 0  # octets read since the last pause or turn

    def on_body_refused(self, callback) -> None:
        self._refuse = callback

    @property
    def closes(self) -> bool:
        """The connection ends with this request (its answer said so, or the answer left the body unread)."""
        return self._disconnect_on_finish or self.stream is None or self.stream.closed()

    def write_headers(self, start_line, headers, chunk=None):
        if not self._read_finished:  # an answer before the request was read: the connection ends with it, and
            self._disconnect_on_finish = True  # Tornado says so (Connection: close), so that no client reuses it
        return super().write_headers(start_line, headers, chunk)

    def _can_keep_alive(self, start_line, headers) -> bool:
        # called once the request's headers are parsed, before the handler sees them
        self._declares_body = ("chunked" in headers.get("Transfer-Encoding", "").lower()
                               or headers.get("Content-Length", "0").strip() != "0")
        return super()._can_keep_alive(start_line, headers)

    def _read_body(self, code, headers, delegate):
        if self._write_finished:  # answered already: the body is dropped, not parsed (lingering close)
            length = headers.get("Content-Length")
            return self._linger(int(length) if length and length.isdigit() else None)
        return super()._read_body(code, headers, delegate)

    def _finish_request(self, future) -> None:
        """The answer is written. When it leaves part of the body unread, the connection is not closed here: the
        server stops sending, and the body's reader drops what still comes and closes (``_linger``)."""
        if (self._disconnect_on_finish and self._declares_body and not self._read_finished
                and self.stream is not None and not self.stream.closed()):
            self._clear_callbacks()
            try:
                self.stream.socket.shutdown(socket.SHUT_WR)
            except OSError:
                self.stream.close()
            # however the reader fares (a client that sends nothing more), the connection ends by then
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.stream.close)
            if not self._finish_future.done():
                self._finish_future.set_result(None)
            return
        super()._finish_request(future)

    async def _linger(self, remaining: Optional[int] = None) -> None:
        """Drop what the client still sends of a body the answer made unwanted — ``remaining`` octets when known
        — for LINGER_SECONDS at most (LINGER_OCTETS), once the answer is out; then close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        budget = LINGER_OCTETS if remaining is None else min(remaining, LINGER_OCTETS)
        if self._inbox is None:
            self._inbox = bytearray(self.params.chunk_size)
        try:
            while budget > 0 and not self.stream.closed():
                read = self.stream.read_into(_window(self._inbox, min(len(self._inbox), budget)), partial=True)
                budget -= await asyncio.wait_for(read, max(0.0, deadline - loop.time()))
            if not self._finish_future.done():  # the answer is still being written
                await asyncio.wait_for(asyncio.shield(self._finish_future), max(0.0, deadline - loop.time()))
        except (iostream.StreamClosedError, asyncio.TimeoutError, OSError):
            pass
        finally:
            self._inbox = None
            self._disconnect_on_finish = True
            self.close()

    async def _read_fixed_body(self, content_length: int, delegate) -> None:
        """Tornado's, but each piece is received straight into a buffer of its own (``read_into``: recv_into) and
        handed on as it is, instead of being copied into Tornado's read buffer and out of it again."""
        try:
            while content_length > 0:
                if self._write_finished:  # the answer is out (an upload refused mid-body): the rest is dropped
                    await self._linger(content_length)
                    return
                piece = await self._receive(min(self.params.chunk_size, content_length))
                content_length -= len(piece)
                await self._deliver_body(delegate, piece)
                if content_length > 0:
                    await self._pace(len(piece))
        finally:
            self._inbox = None  # not kept for as long as the request's objects live

    async def _receive(self, most: int) -> bytes:
        """What the socket has, up to ``most`` octets (at least one): received into this connection's buffer
        (recv_into), then copied out once, as long as it is."""
        if self._inbox is None:
            self._inbox = bytearray(self.params.chunk_size)
        got = await self.stream.read_into(_window(self._inbox, most), partial=True)
        return bytes(memoryview(self._inbox)[:got])

    async def _read_chunked_body(self, delegate) -> None:
        reader = ChunkedBody(self.params.chunk_size, self._max_body_size)
        try:
            while not reader.done:
                if self._write_finished:  # the answer is out (an upload refused mid-body): the rest is dropped
                    await self._linger()
                    return
                data = await self._receive(self.params.chunk_size)
                try:
                    pieces = reader.feed(data)
                except BadRequest as refusal:
                    await self._refuse_body(refusal)
                    return
                for piece in pieces:
                    await self._deliver_body(delegate, piece)
                if reader.extra:
                    # The next request of a pipelining client was read along with the body's end: it is dropped
                    # and the connection closes after this answer (clients retry what a closed connection did not
                    # answer).
                    self._disconnect_on_finish = True
                if not reader.done:
                    await self._pace(len(data))
        finally:
            self._inbox = None

    async def _pace(self, got: int):
        """Between two reads of a body: after a short one, a pause (SMALL_READ); after YIELD_EVERY octets read
        without waiting for the network, a turn for the other connections."""
        if got < SMALL_READ:
            self._unpaced = 0
            await asyncio.sleep(SMALL_READ_PAUSE)
            return
        self._unpaced += got
        if self._unpaced >= YIELD_EVERY:
            self._unpaced = 0
            await asyncio.sleep(0)

    async def _refuse_body(self, refusal: BadRequest):
        log.info("%s: %s", self.context, refusal.message)
        if self._refuse is None:
            raise httputil.HTTPInputError(refusal.message)
        self._refuse(refusal)
        # The handler answers (at once or after cleaning up); the connection closes after the answer. Until then
        # the rest of the body is drained unparsed, which also notices a client that goes away; then it lingers.
        while not self._write_finished and not self.stream.closed():
            await self.stream.read_bytes(self.params.chunk_size, partial=True)
        await self._linger()


class ChunkedBody:
    """The decoder of a ``Transfer-Encoding: chunked`` body: ``feed(data)`` returns the body's data in it (pieces
    of up to ``piece_size``), raises BadRequest for a body that breaks the chunk rule and HTTPInputError for a
    malformed one."""

    def __init__(self, piece_size: int, max_body_size: int):
        self._piece = piece_size
        self._max_body = max_body_size
        self._carry = b""  # an incomplete size line or CRLF from the previous read
        self._left = 0  # data octets of the current chunk still to come
        self._crlf = False  # the CRLF after a chunk's data is due
        self.chunks = 0
        self.received = 0
        self.done = False
        self.extra = 0  # octets read after the end of the body (a pipelined request): they are dropped

    def feed(self, data: bytes) -> list:
        if self._carry:
            data, self._carry = self._carry + data, b""
        view = memoryview(data)
        end = len(data)
        pos = 0
        out, pending, pending_size = [], [], 0
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                pending.append(view[pos:pos + take])
                pending_size += take
                pos += take
                self._left -= take
                if not self._left:
                    self._crlf = True
                if pending_size >= self._piece:
                    out.append(_joined(pending, data))
                    pending, pending_size = [], 0
                continue
            if self._crlf:
                if end - pos < 2:
                    self._carry = data[pos:]
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise httputil.HTTPInputError("improperly terminated chunk")
                pos += 2
                self._crlf = False
                continue
            eol = data.find(b"\r\n", pos, pos + MAX_SIZE_LINE)
            if eol < 0:
                if end - pos >= MAX_SIZE_LINE:
                    raise httputil.HTTPInputError("invalid chunk size")
                self._carry = data[pos:]
                break
            line = data[pos:eol]
            if not CHUNK_SIZE_LINE.fullmatch(line):
                raise httputil.HTTPInputError("invalid chunk size")
            size = int(line, 16)
            pos = eol + 2
            if size == 0:
                if data[pos:pos + 2] != b"\r\n"[:end - pos]:
                    raise httputil.HTTPInputError("improperly terminated chunked request")
                if end - pos < 2:
                    self._carry = b"0\r\n" + data[pos:]  # the final CRLF is split across reads: parse it again
                    break
                self.extra = end - (pos + 2)
                self.done = True
                break
            self.chunks += 1
            self.received += size
            if self.received > self._max_body:
                raise httputil.HTTPInputError("chunked body too large")
            if self.chunks > FREE_CHUNKS and self.received < self.chunks * MIN_CHUNK_AVERAGE:
                raise BadRequest(TINY_CHUNKS)
            self._left = size
        if pending:
            out.append(_joined(pending, data))
        return out


def _joined(pieces: list, data: bytes) -> bytes:
    if len(pieces) == 1 and len(pieces[0]) == len(data):
        return data
    return b"".join(pieces)


def _window(buffer: bytearray, size: int) -> bytearray:
    """The first ``size`` octets of ``buffer``, for ``read_into`` to receive into, without a copy: a memoryview, which
    Tornado's read_into takes (it receives into any writable buffer) though its annotation says bytearray."""
    return cast(bytearray, memoryview(buffer)[:size])
