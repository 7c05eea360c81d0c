"""The filesystem configuration provider: a directory of YAML documents (``secrets/``, ``users/``, ``collections/``
below the namespace's directory), read again when one of them changes (GitOps, docs/configuration.md#reloading).

Only the documents whose size, modification time or inode changed are read and parsed again (``provider.Parser``).
"""

import asyncio
import functools
import logging
import os
import time
from collections.abc import Iterator
from typing import Optional

from backup_repository.config import documents as D
from backup_repository.config.provider import Parser, Snapshot, SnapshotSource, Source
from backup_repository.config.watch import DirectoryWatcher

log = logging.getLogger(__name__)

#: The directories of the documents below the root, and the kind of document each holds.
KINDS = ((D.SECRETS_DIR, "Secret"), (D.USERS_DIR, "BackupUser"), (D.COLLECTIONS_DIR, "BackupCollection"))


def scan(root: str) -> tuple:
    """The documents below ``root``: ((directory, file name, size, modification time, inode), ...), which changes
    whenever a document does. OSError when a directory exists but cannot be listed."""
    entries = []
    for sub, _ in KINDS:
        directory = os.path.join(root, sub)
        for name in D.list_documents(directory):
            try:
                st = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            entries.append((sub, name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(entries)


def read_snapshot(root: str, parser: Optional[Parser] = None, stamp: Optional[tuple] = None) -> Snapshot:
    """Read the documents below ``root`` (blocking; run it off the event loop). With the ``parser`` of the last
    read, only what changed since is read again; ``stamp`` is a scan() made just before, if any."""
    stamp = scan(root) if stamp is None else stamp
    problems: list[D.Problem] = []
    if not os.path.isdir(root):
        problems.append(D.Problem(root, "", "the configuration directory does not exist"))
    listed: dict[str, list[tuple[str, tuple]]] = {sub: [] for sub, _ in KINDS}
    for entry in stamp:  # the entry itself is the document's version: no copy of ten thousand tuples
        listed[entry[0]].append((entry[1], entry))
    sources = {kind: list(_sources(root, sub, kind, listed[sub], problems)) for sub, kind in KINDS}
    user_files = frozenset(name.rsplit(".", 1)[0] for name, _ in listed[D.USERS_DIR]) \
        if os.path.isdir(root) else None
    return (parser or Parser()).build(sources["Secret"], sources["BackupUser"], sources["BackupCollection"],
                                      problems, stamp, user_files)


def _sources(root: str, sub: str, kind: str, names: list[tuple[str, tuple]],
             problems: list[D.Problem]) -> Iterator[Source]:
    directory = os.path.join(root, sub)
    seen = set()
    for name, version in names:
        path = os.path.join(directory, name)
        doc_id = name.rsplit(".", 1)[0]
        if doc_id in seen:
            problems.append(D.Problem(path, "", f"another file already defines {doc_id!r}; ignored"))
            continue
        seen.add(doc_id)
        yield Source(doc_id, path, version, functools.partial(D.load_document, path, kind))


class FilesystemProvider(SnapshotSource):
    """A directory of YAML documents, read again when one of them changes (docs/configuration.md#reloading).

    Where the kernel says when a file changes (inotify), a change is read within a fraction of a second, the few
    directories themselves are looked at every ``reload_interval`` (a symbolic link swapped to another checkout,
    a directory made), and every file's size and modification time are compared once a minute as a safety net
    (network filesystems). Elsewhere every file is compared every ``reload_interval``. Either way only the
    documents that changed are read and parsed again."""

    #: seconds between comparisons of every file when the kernel tells of changes
    FULL_SCAN_INTERVAL = 60.0
    #: a burst of changes (an editor's save, a git checkout) is read once, this long after it began
    SETTLE = 0.1

    def __init__(self, local_path: str, namespace: str, reload_interval: float = 5.0):
        super().__init__()
        self.root = os.path.join(os.path.expanduser(local_path), namespace)
        self.reload_interval = reload_interval
        self._parser = Parser()
        self._task: Optional[asyncio.Task] = None

    def load(self) -> Snapshot:
        """Read everything now (blocking); used by one-shot commands."""
        self._snapshot = read_snapshot(self.root, self._parser)
        self.loaded_at = time.time()
        return self._snapshot

    async def open(self) -> None:
        """Read everything once, before serving."""
        self.load()

    async def refresh(self) -> bool:
        """Read again what changed, if anything did; return True when a new snapshot was installed."""
        loop = asyncio.get_running_loop()
        stamp = await loop.run_in_executor(None, scan, self.root)
        if self._snapshot is not None and stamp == self._snapshot.fingerprint:
            return False
        self.install(await loop.run_in_executor(None, read_snapshot, self.root, self._parser, stamp))
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        await super().stop()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _directories(self) -> list:
        """The root and every directory on the way to the documents: where a change can show."""
        result = [self.root]
        for sub, _ in KINDS:
            parts = sub.split(os.sep)
            result += [os.path.join(self.root, *parts[:end]) for end in range(1, len(parts) + 1)]
        return list(dict.fromkeys(result))

    def _layout(self) -> tuple:
        layout: list[Optional[tuple[int, int]]] = []
        for directory in self._directories():
            try:
                st = os.stat(directory)
                layout.append((st.st_ino, st.st_mtime_ns))
            except OSError:
                layout.append(None)
        return tuple(layout)

    async def _watch(self):
        loop = asyncio.get_running_loop()
        watcher = DirectoryWatcher.open()
        if watcher is not None and not watcher.watch(self._directories()):
            watcher.close()
            watcher = None
        layout = await loop.run_in_executor(None, self._layout)
        last_full, due = 0.0, True  # compare at once: a change made since open() was seen by nothing
        try:
            while True:
                if due:
                    last_full = time.monotonic()
                    try:
                        await self.refresh()
                    except Exception:  # keep watching: a transient error must not freeze the configuration
                        log.exception("cannot reload the configuration from %s", self.root)
                if watcher is None:
                    await asyncio.sleep(self.reload_interval)
                    continue
                due = await watcher.changed(self.reload_interval)
                if due:
                    await asyncio.sleep(self.SETTLE)
                    watcher.forget()  # what happened while settling is read now too
                now = await loop.run_in_executor(None, self._layout)
                if now != layout:
                    layout, due = now, True
                    watcher.watch(self._directories())
                due = due or time.monotonic() - last_full >= self.FULL_SCAN_INTERVAL
        finally:
            if watcher is not None:
                watcher.close()

    def check(self) -> None:
        """Raise OSError when the configuration directory cannot be read (used by /ready)."""
        os.listdir(self.root)
