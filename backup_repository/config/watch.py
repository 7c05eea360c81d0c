"""Being told when a configuration directory changes, instead of looking at every file again and again.

On Linux the kernel's inotify says when a file in a watched directory is written, created, moved or deleted;
``DirectoryWatcher`` turns that into an asyncio wait. Elsewhere, or when inotify cannot be used (no more watches
allowed, a filesystem that does not support it), ``DirectoryWatcher.open`` returns None and the provider looks at
every file at each reload interval, as before. inotify does not see changes made on another host of a network
filesystem, so the provider also compares every file once a minute (docs/configuration.md#reloading).
"""

import asyncio
import ctypes
import ctypes.util
import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x002, 0x004, 0x008
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x040, 0x080, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018  (present?)
    except (OSError, AttributeError):
        return None
    return libc


class DirectoryWatcher:
    """inotify watches on a few directories; ``await changed(timeout)`` returns True when something in them
    changed (a file written, created, moved or deleted, or the directory itself moved or deleted)."""

    def __init__(self, libc, fd: int):
        self._libc = libc
        self._fd = fd
        self._event = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, self._readable)

    @classmethod
    def open(cls) -> Optional["DirectoryWatcher"]:
        libc = _libc() if hasattr(os, "O_CLOEXEC") else None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC) if libc is not None else -1
        if fd < 0:
            return None
        return cls(libc, fd)

    def watch(self, directories) -> bool:
        """Watch each directory that exists (again: a directory made or replaced since is watched from now on);
        False when the kernel refuses a watch (e.g. fs.inotify.max_user_watches reached)."""
        ok = True
        for directory in directories:
            if not os.path.isdir(directory):
                continue
            if self._libc.inotify_add_watch(self._fd, os.fsencode(directory), _MASK) < 0:
                error = ctypes.get_errno()
                log.warning("configuration: cannot watch %s for changes (%s); looking at every file at each reload "
                            "interval instead", directory, os.strerror(error))
                ok = False
        return ok

    def _readable(self):
        try:
            while os.read(self._fd, 65536):  # the events themselves do not matter: something changed
                pass
        except BlockingIOError:
            pass
        except OSError:
            return
        self._event.set()

    async def changed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self._event.clear()
        return True

    def forget(self):
        """Forget the changes seen so far (the caller is about to read everything)."""
        self._event.clear()

    def close(self):
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
