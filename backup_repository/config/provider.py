"""The filesystem configuration provider: a directory of YAML documents, watched for changes (GitOps).

Documents are parsed into an immutable ``Snapshot``. A background task compares a cheap fingerprint of the
directories (names, sizes, modification times) every ``reload_interval`` seconds and re-reads everything only when
something changed, so requests never touch the disk and edits apply within seconds without a restart.
"""

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Optional

from backup_repository.config import documents as D

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    users: dict
    collections: dict
    problems: tuple
    fingerprint: tuple


def fingerprint(root: str) -> tuple:
    """Names, sizes and modification times of every document; changes whenever a document does."""
    entries = []
    for sub in (D.USERS_DIR, D.COLLECTIONS_DIR, D.SECRETS_DIR):
        directory = os.path.join(root, sub)
        for name in D.list_documents(directory):
            try:
                st = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            entries.append((sub, name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(entries)


def read_snapshot(root: str) -> Snapshot:
    """Read and parse every document below ``root`` (blocking; run it off the event loop)."""
    stamp = fingerprint(root)
    problems = []
    if not os.path.isdir(root):
        problems.append(D.Problem(root, "", "the configuration directory does not exist"))

    secrets = {}
    for document in _documents(root, D.SECRETS_DIR, "Secret", problems):
        secrets[document.id] = _parse(document, D.parse_secret, (), problems)

    users = {}
    for document in _documents(root, D.USERS_DIR, "BackupUser", problems):
        user = _parse(document, D.parse_user, (secrets,), problems)
        if user is not None:
            users[user.name] = user

    collections = {}
    for document in _documents(root, D.COLLECTIONS_DIR, "BackupCollection", problems):
        collection = _parse(document, D.parse_collection, (secrets,), problems)
        if collection is not None:
            collections[collection.id] = collection

    for collection in collections.values():
        for index, grant in enumerate(collection.access_control):
            if grant.type == "user" and grant.name not in users:
                path = os.path.join(root, D.COLLECTIONS_DIR, collection.id + ".yaml")
                problems.append(D.Problem(path, f"spec.accessControl[{index}]", f"unknown user {grant.name!r}"))

    return Snapshot(users, collections, tuple(problems), stamp)


def _documents(root: str, sub: str, kind: str, problems: list):
    directory = os.path.join(root, sub)
    seen = set()
    for name in D.list_documents(directory):
        document = D.load_document(os.path.join(directory, name), kind, problems)
        if document is None:
            continue
        if document.id in seen:
            problems.append(D.Problem(document.path, "", f"another file already defines {document.id!r}; ignored"))
            continue
        seen.add(document.id)
        yield document


def _parse(document, parser, args, problems):
    try:
        return parser(document, *args)
    except D.DocumentError as exc:
        document.problems.append(D.Problem(document.path, exc.field, exc.message + "; the object is not loaded"))
        return None
    finally:
        problems.extend(document.problems)


class FilesystemProvider:
    """Serves the current Snapshot and refreshes it when the documents change."""

    def __init__(self, local_path: str, namespace: str, reload_interval: float = 5.0):
        self.root = os.path.join(os.path.expanduser(local_path), namespace)
        self.reload_interval = reload_interval
        self._snapshot: Optional[Snapshot] = None
        self._task: Optional[asyncio.Task] = None

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def load(self) -> Snapshot:
        """Read everything now (blocking); used at start-up and by one-shot commands."""
        self._snapshot = read_snapshot(self.root)
        return self._snapshot

    async def refresh(self) -> bool:
        """Re-read the documents if they changed; return True when a new snapshot was installed."""
        loop = asyncio.get_running_loop()
        stamp = await loop.run_in_executor(None, fingerprint, self.root)
        if self._snapshot is not None and stamp == self._snapshot.fingerprint:
            return False
        snapshot = await loop.run_in_executor(None, read_snapshot, self.root)
        self._snapshot = snapshot
        log.info(
            "configuration reloaded from %s: %d users, %d collections",
            self.root, len(snapshot.users), len(snapshot.collections),
        )
        log_problems(snapshot)
        return True

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self):
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _watch(self):
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                await self.refresh()
            except Exception:  # keep watching: a transient error must not freeze the configuration
                log.exception("cannot reload the configuration from %s", self.root)

    def check(self):
        """Raise OSError when the configuration directory cannot be read (used by /ready)."""
        os.listdir(self.root)

    def user(self, name: str):
        return self._snapshot.users.get(name)

    def collection(self, collection_id: str):
        return self._snapshot.collections.get(collection_id)


def log_problems(snapshot: Snapshot):
    for problem in snapshot.problems:
        log.warning("configuration problem: %s", problem)
