"""Objects sent to a client's socket kernel to kernel, from a thread of the store's transfer pool.

``BlobStore.open_sender`` opens the object: a local store's file (``LocalFile``: ``os.sendfile`` moves the bytes
from the page cache to the socket), or an S3 or Azure store's answer to a GET over plain HTTP (``Relay``:
``os.splice`` moves them from the store's connection through a pipe to the client's socket). No byte passes
through Python. The thread waits for room (or data) with a ``poll()`` of its own and wakes at least once a second
to see whether it should stop. The event loop only waits for the thread: a 1 GiB download costs it one future.
"""

import asyncio
import errno
import fcntl
import os
import select
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from backup_repository.failures import StorageError

#: The most one ``sendfile`` call is asked for; a non-blocking socket takes what fits in its buffer anyway.
SEND_PIECE = 16 << 20
#: How long a sending thread waits for room in the socket before it asks again whether it should stop (ms).
SEND_WAKE_MS = 1000
#: The size asked for the relay's pipe (Linux gives 64 KiB by default; 1 MiB is what an unprivileged process may
#: ask for by default): the bytes moved per splice.
PIPE_SIZE = 1 << 20
#: What ``sendfile`` answers when the client's end of the connection is gone (reset, timed out, shut down).
CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENOTCONN,
                         errno.EHOSTUNREACH, errno.ENETUNREACH})
#: Whether this system can relay a store's answer by splice (Linux).
CAN_SPLICE = hasattr(os, "splice")


class SendStopped(Exception):
    """``send_range`` was asked to stop."""


class KernelSender(ABC):
    """An object open for sending; ``close()`` it when done (``BlobStore.open_sender`` makes these).

    ``transfers`` is the store's pool of transfer threads, ``closing`` the store's flag that every sending thread
    obeys when the server stops, ``where`` the store as the messages name it, ``closed()`` called once by close().
    """

    def __init__(self, name: str, transfers, closing: threading.Event, where: str, closed):
        self.name = name
        self._transfers = transfers
        self._closing = closing
        self._where = where
        self._closed = closed
        self._stop = threading.Event()

    @abstractmethod
    def _source_fd(self) -> int:
        """A duplicate of the descriptor the bytes come from (the thread closes it)."""

    @abstractmethod
    def _transfer(self, source_fd: int, sock_fd: int, start: int, end: int, progress) -> int:
        """Move the bytes in the thread; see send()."""

    @abstractmethod
    def _release(self):
        """Let go of the source (close() calls it once)."""

    async def send(self, sock: socket.socket, start: int, end: int, progress: Callable[[int], object]) -> int:
        """Send the bytes ``[start, end)`` to ``sock`` (connected, non-blocking, with nothing else writing to it
        until this returns) from a transfer thread; return how many. ``progress(n)`` is called in that thread.

        Raises ConnectionError when the client is gone, StorageError when the object cannot be read or ends early
        or the store is closing. Cancelled, it stops the thread (at its next wake-up, within a second) and waits for
        it before the CancelledError goes on: when this returns or raises, the socket is the caller's again.
        """
        # the thread sends from duplicates and closes them itself: a descriptor closed meanwhile by its owner
        # (Tornado when the client goes, close() below) cannot be reused under the thread by another file or socket
        source_fd = self._source_fd()
        try:
            fds = (source_fd, os.dup(sock.fileno()))
        except OSError:
            os.close(source_fd)
            raise

        def run():
            try:
                return self._transfer(*fds, start, end, progress)
            finally:
                _close_all(fds)

        try:
            job = self._transfers.submit(run)
        except RuntimeError:  # the pool is shut down: the server is stopping
            _close_all(fds)
            raise StorageError(f"cannot send {self.name}: the store is closing") from None
        done = asyncio.wrap_future(job)
        # once cancelled, nobody asks how the thread ended (SendStopped, the client gone): no "never retrieved"
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        try:
            await asyncio.wait((done,))  # unlike awaiting the future itself, a cancel here leaves the job alone
        except asyncio.CancelledError:
            if job.cancel():  # still waiting for a thread: it never runs, the descriptors are still ours
                _close_all(fds)
            else:
                self._stop.set()
                await asyncio.wait((done,))
            raise
        if job.cancelled():  # dropped by the pool's shutdown before it began: the thread never owned the fds
            _close_all(fds)
            raise StorageError(f"cannot send {self.name}: the store is closing")
        try:
            return job.result()
        except ConnectionError:
            raise
        except SendStopped:
            raise StorageError(f"cannot send {self.name}: the store is closing") from None
        except Exception as exc:  # EOFError (a short object), a read error, a store that went quiet
            raise StorageError(f"cannot read {self.name} from {self._where}: {exc}") from exc

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._closing.is_set()

    def close(self) -> None:
        if self._closed is not None:
            self._release()
            self._closed()
            self._closed = None


class LocalFile(KernelSender):
    """A local store's file, sent by ``os.sendfile``."""

    def __init__(self, name: str, fd: int, transfers, closing: threading.Event, where: str, closed):
        super().__init__(name, transfers, closing, where, closed)
        self._fd = fd

    def _source_fd(self) -> int:
        return os.dup(self._fd)

    def _transfer(self, source_fd, sock_fd, start, end, progress) -> int:
        return send_range(source_fd, sock_fd, start, end, self._stopped, progress)

    def _release(self):
        os.close(self._fd)


@dataclass
class RelaySource:
    """A store's answer to a GET of ``[start, end)``, its headers read (storage/cloud.py opens it): the socket of
    its connection, the bytes of the body already read along with the headers, how long the store may stay silent
    (seconds) and how to let go of the connection (it is closed, never reused: its body was read around the HTTP
    client)."""
    sock: socket.socket
    start: int
    end: int
    prefix: bytes
    timeout: float
    close: Callable[[], None]


class Relay(KernelSender):
    """An S3 or Azure store's answer relayed to the client by ``os.splice``, through a pipe."""

    def __init__(self, name: str, source: RelaySource, transfers, closing: threading.Event, where: str, closed):
        super().__init__(name, transfers, closing, where, closed)
        self._source = source

    def _source_fd(self) -> int:
        return os.dup(self._source.sock.fileno())

    def _transfer(self, source_fd, sock_fd, start, end, progress) -> int:
        source = self._source
        if (start, end) != (source.start, source.end):
            raise ValueError(f"the store's answer holds bytes {source.start}-{source.end}, not {start}-{end}")
        return relay_range(source_fd, source.prefix, end - start, sock_fd, source.timeout, self._stopped, progress)

    def _release(self):
        self._source.close()


def send_range(file_fd: int, sock_fd: int, start: int, end: int, stopped, progress) -> int:
    """Send the bytes ``[start, end)`` of ``file_fd`` to the non-blocking socket ``sock_fd``; return how many.

    Blocks: run it in a thread. When the socket is full it waits for room with its own ``poll()`` (nothing is
    registered with an event loop), waking at least every ``SEND_WAKE_MS`` to ask ``stopped()``; ``progress(n)``
    is called after each piece. Raises SendStopped when ``stopped()`` says so, ConnectionError when the client is
    gone, EOFError when the file ends before ``end``, OSError when it cannot be read.
    """
    writable = select.poll()
    writable.register(sock_fd, select.POLLOUT)
    position = start
    while position < end:
        if stopped():
            raise SendStopped(f"stopped after {position - start} of {end - start} bytes")
        try:
            sent = os.sendfile(sock_fd, file_fd, position, min(SEND_PIECE, end - position))
        except BlockingIOError:
            writable.poll(SEND_WAKE_MS)  # room in the socket, the client gone (POLLERR/POLLHUP), or time to look
            continue
        except OSError as exc:
            if isinstance(exc, ConnectionError) or exc.errno in CLIENT_GONE:
                raise ConnectionError(exc.errno, f"the client went away: {exc.strerror}") from exc
            raise
        if sent == 0:
            raise EOFError(f"the file ended at byte {position}, {end - position} bytes early")
        position += sent
        progress(sent)
    return position - start


def relay_range(store_fd: int, prefix: bytes, count: int, sock_fd: int, timeout: float, stopped, progress) -> int:
    """Send ``prefix`` and then the next ``count - len(prefix)`` bytes of the store's connection ``store_fd`` to the
    non-blocking socket ``sock_fd``, store to pipe to socket by ``os.splice``; return how many.

    Blocks: run it in a thread. It waits with its own ``poll()`` for data from the store or room in the socket,
    waking at least every ``SEND_WAKE_MS`` to ask ``stopped()``. Raises SendStopped when ``stopped()`` says so,
    ConnectionError when the client is gone, EOFError when the store's answer ends early, TimeoutError when the
    store sends nothing for ``timeout`` seconds while there is room to take it.
    """
    os.set_blocking(store_fd, False)
    sent = _send_prefix(prefix, sock_fd, stopped, progress)
    remaining = count - sent
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            capacity = fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above the system's limit for this process: the pipe keeps its size
            capacity = fcntl.fcntl(pipe_in, fcntl.F_GETPIPE_SZ)
        held, heard = 0, time.monotonic()  # bytes in the pipe; when the store last sent some
        waiting = select.poll()
        while remaining or held:
            if stopped():
                raise SendStopped(f"stopped after {sent} of {count} bytes")
            moved = False
            if remaining and held < capacity:
                try:
                    taken = os.splice(store_fd, pipe_in, min(remaining, capacity - held), flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:  # reset by the store: its failure, not the client's (no ConnectionError)
                    raise OSError(f"the store's connection failed at byte {count - remaining}: {exc.strerror}") \
                        from None
                else:
                    if taken == 0:
                        raise EOFError(f"the store's answer ended at byte {count - remaining}, {remaining} bytes early")
                    remaining -= taken
                    held += taken
                    moved, heard = True, time.monotonic()
            if held:
                try:
                    given = os.splice(pipe_out, sock_fd, held, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if isinstance(exc, ConnectionError) or exc.errno in CLIENT_GONE:
                        raise ConnectionError(exc.errno, f"the client went away: {exc.strerror}") from exc
                    raise
                else:
                    held -= given
                    sent += given
                    moved = True
                    progress(given)
            if moved:
                continue
            # nothing moved: wait for data from the store (room in the pipe) or room in the socket (bytes in the pipe)
            want_store = remaining and held < capacity
            if want_store and time.monotonic() - heard > timeout:
                raise TimeoutError(f"the store sent nothing for {timeout:g}s")
            for fd in (store_fd, sock_fd):
                try:
                    waiting.unregister(fd)
                except KeyError:
                    pass
            if want_store:
                waiting.register(store_fd, select.POLLIN)
            if held:
                waiting.register(sock_fd, select.POLLOUT)
            waiting.poll(SEND_WAKE_MS)
        return sent
    finally:
        _close_all((pipe_out, pipe_in))


_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


def _send_prefix(prefix: bytes, sock_fd: int, stopped, progress) -> int:
    """The body bytes that came with the store's headers, sent to the non-blocking socket."""
    view, writable = memoryview(prefix), select.poll()
    writable.register(sock_fd, select.POLLOUT)
    while view:
        if stopped():
            raise SendStopped(f"stopped after {len(prefix) - len(view)} of the first {len(prefix)} bytes")
        try:
            written = os.write(sock_fd, view)
        except BlockingIOError:
            writable.poll(SEND_WAKE_MS)
            continue
        except OSError as exc:
            if isinstance(exc, ConnectionError) or exc.errno in CLIENT_GONE:
                raise ConnectionError(exc.errno, f"the client went away: {exc.strerror}") from exc
            raise
        view = view[written:]
        progress(written)
    return len(prefix)


def _close_all(fds):
    for fd in fds:
        os.close(fd)
