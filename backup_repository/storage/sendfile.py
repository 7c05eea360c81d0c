"""Objects of a local store sent to a client's socket kernel to kernel (``os.sendfile``).

``BlobStore.open_local`` opens the object's file; ``LocalFile.send`` hands the socket to a thread of the store's
transfer pool, which moves the bytes from the page cache to the socket without a copy through Python, waits for
room in the socket with a ``poll()`` of its own, and wakes at least once a second to see whether it should stop.
The event loop only waits for the thread: a 1 GiB download costs it one future.
"""

import asyncio
import errno
import os
import select
import threading

from backup_repository.failures import StorageError

#: The most one ``sendfile`` call is asked for; a non-blocking socket takes what fits in its buffer anyway.
SEND_PIECE = 16 << 20
#: How long a sending thread waits for room in the socket before it asks again whether it should stop (ms).
SEND_WAKE_MS = 1000
#: What ``sendfile`` answers when the client's end of the connection is gone (reset, timed out, shut down).
CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENOTCONN,
                         errno.EHOSTUNREACH, errno.ENETUNREACH})


class SendStopped(Exception):
    """``send_range`` was asked to stop."""


class LocalFile:
    """An object's file, open for sending; ``close()`` it when done (``BlobStore.open_local`` makes these).

    ``transfers`` is the store's pool of transfer threads, ``closing`` the store's flag that every sending thread
    obeys when the server stops, ``where`` the store as the messages name it, ``closed()`` called once by close().
    """

    def __init__(self, name: str, fd: int, transfers, closing: threading.Event, where: str, closed):
        self.name = name
        self._fd = fd
        self._transfers = transfers
        self._closing = closing
        self._where = where
        self._closed = closed
        self._stop = threading.Event()

    async def send(self, sock, start: int, end: int, progress) -> int:
        """Send the bytes ``[start, end)`` to ``sock`` (connected, non-blocking, with nothing else writing to it
        until this returns) from a transfer thread; return how many. ``progress(n)`` is called in that thread.

        Raises ConnectionError when the client is gone, StorageError when the file cannot be read or ends early or
        the store is closing. Cancelled, it stops the thread (at its next wake-up, within a second) and waits for
        it before the CancelledError goes on: when this returns or raises, the socket is the caller's again.
        """
        # the thread sends from duplicates and closes them itself: a descriptor closed meanwhile by its owner
        # (Tornado when the client goes, close() below) cannot be reused under the thread by another file or socket
        file_fd = os.dup(self._fd)
        try:
            fds = (file_fd, os.dup(sock.fileno()))
        except OSError:
            os.close(file_fd)
            raise

        def run():
            try:
                return send_range(*fds, start, end, self._stopped, progress)
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
        except Exception as exc:  # EOFError (a short file), a read error
            raise StorageError(f"cannot read {self.name} from {self._where}: {exc}") from exc

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._closing.is_set()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._closed()


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


def _close_all(fds):
    for fd in fds:
        os.close(fd)
