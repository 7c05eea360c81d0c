"""Objects as files below one local directory (``file:///dir``).

libcloud's local driver writes straight into the final file (a half-written version would be visible), takes a
lock file per object and reads a whole file into memory to serve a byte range. Backups are large and must appear
atomically, so this small backend does the file work itself: a temporary file in the same directory, fsync, then
an atomic rename; ranges are read with ``pread`` (or sent from ``open_file``'s descriptor by storage/sendfile.py).
Every method blocks and runs on the store's thread pool.
"""

import os
import uuid
from collections.abc import Callable, Generator, Iterable
from datetime import datetime
from typing import Optional

from backup_repository.storage.backend import Chunk, OpensFiles

CHUNK = 1 << 20
TEMP_MARK = ".upload-"


class LocalBackend(OpensFiles):
    def __init__(self, root: str):
        self.root = root

    def check(self) -> None:
        """Raise OSError when the directory cannot hold objects."""
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"the storage directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"the storage directory {self.root} is not writable")

    def _path(self, name: str) -> str:
        parts = name.split("/")
        if not name or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid object name {name!r}")
        return os.path.join(self.root, *parts)

    # --- writing --------------------------------------------------------------------------------
    def write_stream(self, name: str, chunks: Iterable[Chunk], check_size: Optional[Callable[[int], object]] = None,
                     retain_until: Optional[datetime] = None) -> int:
        """Write every chunk, then make the object visible at ``name`` in one rename. ``retain_until`` is not
        kept: a local directory has no retention of its own; the server enforces minimumRetention alone.

        ``check_size(stored_bytes)`` may raise to refuse the object before it becomes visible. When anything
        fails (the chunk iterator included) the temporary file is removed and nothing is left behind.
        """
        path = self._path(name)
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temp = os.path.join(directory, f".{os.path.basename(path)}{TEMP_MARK}{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if check_size is not None:
                check_size(size)
            os.replace(temp, path)
        except BaseException:
            _unlink(temp)
            raise
        _fsync_directory(directory)
        return size

    def put_bytes(self, name: str, data: bytes) -> None:
        self.write_stream(name, [data])

    # --- reading --------------------------------------------------------------------------------
    def size(self, name: str) -> Optional[int]:
        """The object's size, or None when it does not exist."""
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            return None

    def open_file(self, name: str) -> int:
        """A read-only descriptor of the object's file (FileNotFoundError when there is none). While it is open,
        the bytes stay readable even when rotation deletes the file meanwhile."""
        return os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)

    def read_range(self, name: str, start: int = 0, end: Optional[int] = None,
                   chunk_size: int = CHUNK) -> Generator[bytes, None, None]:
        """Yield the bytes ``[start, end)`` of an object (to its end when ``end`` is None)."""
        fd = self.open_file(name)
        try:
            if end is None:
                end = os.fstat(fd).st_size
            position = start
            while position < end:
                data = os.pread(fd, min(chunk_size, end - position), position)
                if not data:
                    raise EOFError(f"{name} ended at byte {position}, {end - position} bytes early")
                position += len(data)
                yield data
        finally:
            os.close(fd)

    def get_bytes(self, name: str) -> bytes:
        return b"".join(self.read_range(name))

    # --- deleting -------------------------------------------------------------------------------
    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        _fsync_directory(os.path.dirname(path))
        return True

    def objects(self) -> list[tuple[str, float]]:
        found = []
        for directory, _, files in os.walk(self.root):
            for entry in files:
                if entry.startswith("."):  # temporary upload files, health-check probes
                    continue
                full = os.path.join(directory, entry)
                try:
                    modified = os.stat(full).st_mtime
                except FileNotFoundError:
                    continue
                found.append((os.path.relpath(full, self.root).replace(os.sep, "/"), modified))
        return found

    def remove_leftovers(self, name: str, older_than: float) -> int:
        """Remove ``name`` and its temporary upload files last written before ``older_than`` (epoch seconds)."""
        path = self._path(name)
        removed = 0
        directory, base = os.path.split(path)
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry == base or entry.startswith(f".{base}{TEMP_MARK}"):
                full = os.path.join(directory, entry)
                try:
                    if os.stat(full).st_mtime < older_than:
                        os.unlink(full)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def sweep_temporary(self, older_than: float) -> list[str]:
        """Temporary upload files older than ``older_than`` anywhere in the store: removed, names returned."""
        removed = []
        for directory, _, files in os.walk(self.root):
            for entry in files:
                if entry.startswith(".") and TEMP_MARK in entry:
                    full = os.path.join(directory, entry)
                    try:
                        if os.stat(full).st_mtime < older_than:
                            os.unlink(full)
                            removed.append(os.path.relpath(full, self.root))
                    except FileNotFoundError:
                        pass
        return removed



def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(directory: str) -> None:
    """Make a rename or unlink durable: a crash right after must not bring the old entry back."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
