"""Configuration providers: what they share (SnapshotSource), and the filesystem one — a directory of YAML
documents, watched for changes (GitOps).

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


class ConfigurationUnavailable(Exception):
    """The configuration source cannot be read at start-up (e.g. the Kubernetes API server); the message says why."""


@dataclass(frozen=True)
class Snapshot:
    users: dict
    collections: dict
    problems: tuple
    fingerprint: tuple
    #: names of every BackupUser file, loadable or not (None when the directory could not be listed)
    user_files: Optional[frozenset] = None


@dataclass(frozen=True)
class Change:
    """What a reload removed. A user counts as removed only when its file is gone: a document that fails to parse
    (a typo in a GitOps change) or a directory that cannot be read removes nobody."""

    removed_users: tuple = ()
    removed_access_keys: tuple = ()  # (user name, key name)
    #: (user name, access key name or "", new password hash) of each password that was set anew
    changed_passwords: tuple = ()

    def __bool__(self):
        return bool(self.removed_users or self.removed_access_keys or self.changed_passwords)


def changes(old: "Snapshot", new: "Snapshot") -> Change:
    if old is None or new.user_files is None:
        return Change()
    removed_users = tuple(sorted(name for name in old.users if name not in new.user_files))
    removed_keys, changed = [], []
    for name, user in sorted(old.users.items()):
        now = new.users.get(name)
        if now is None:
            continue
        if now.password_hash != user.password_hash:
            changed.append((name, "", now.password_hash))
        for key_name, key in sorted(user.access_keys.items()):
            new_key = now.access_keys.get(key_name)
            if new_key is None:
                removed_keys.append((name, key_name))
            elif new_key.password_hash != key.password_hash:
                changed.append((name, key_name, new_key.password_hash))
    return Change(removed_users, tuple(removed_keys), tuple(changed))


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
    try:
        user_names = D.list_documents(os.path.join(root, D.USERS_DIR)) if os.path.isdir(root) else None
    except OSError:
        user_names = None
    secrets = list(_documents(root, D.SECRETS_DIR, "Secret", problems))
    users = list(_documents(root, D.USERS_DIR, "BackupUser", problems, user_names))
    collections = list(_documents(root, D.COLLECTIONS_DIR, "BackupCollection", problems))
    return build_snapshot(secrets, users, collections, problems, stamp, _user_files(user_names))


def build_snapshot(secrets, users, collections, problems=(), stamp=(), user_names=None) -> Snapshot:
    """One parser for every source: Documents (from files or from an API server) -> a Snapshot. A bad document
    breaks only its own object; ``problems`` already holds what went wrong while loading them."""
    problems = list(problems)
    parsed_secrets = {}
    for document in secrets:
        parsed_secrets[document.id] = _parse(document, D.parse_secret, (), problems)
    parsed_users = {}
    for document in users:
        user = _parse(document, D.parse_user, (parsed_secrets,), problems)
        if user is not None:
            parsed_users[user.name] = user
    parsed_collections, paths = {}, {}
    for document in collections:
        collection = _parse(document, D.parse_collection, (parsed_secrets,), problems)
        if collection is not None:
            parsed_collections[collection.id] = collection
            paths[collection.id] = document.path

    for collection in parsed_collections.values():
        for index, grant in enumerate(collection.access_control):
            if grant.type == "user" and grant.name not in parsed_users:
                problems.append(D.Problem(paths[collection.id], f"spec.accessControl[{index}]",
                                          f"unknown user {grant.name!r}"))
    return Snapshot(parsed_users, parsed_collections, tuple(problems), stamp, user_names)


def _user_files(names) -> Optional[frozenset]:
    """The ids of every BackupUser file (``names`` from list_documents), or None when the directory is unreadable."""
    return None if names is None else frozenset(name.rsplit(".", 1)[0] for name in names)


def _documents(root: str, sub: str, kind: str, problems: list, names=None):
    """The loadable documents of one directory (``names``: its listing, when the caller already made it)."""
    directory = os.path.join(root, sub)
    seen = set()
    for name in D.list_documents(directory) if names is None else names:
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


class SnapshotSource:
    """What every configuration provider offers the services: the current Snapshot, lookups in it, and a
    notification of what a reload removed or changed (``on_change``). A provider installs each new Snapshot with
    ``install()``; ``open()`` reads the first one, ``start()``/``stop()`` run the watch, ``check()`` raises
    OSError when the source is not usable (``/ready``)."""

    root = ""

    def __init__(self):
        self._snapshot: Optional[Snapshot] = None
        self._listeners = []
        self._notifications = set()

    def on_change(self, listener):
        """``await listener(change)`` runs (in the background) after each reload that removed users or keys, or set
        a password anew."""
        self._listeners.append(listener)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def user(self, name: str):
        return self._snapshot.users.get(name)

    def collection(self, collection_id: str):
        return self._snapshot.collections.get(collection_id)

    def install(self, snapshot: Snapshot):
        previous, self._snapshot = self._snapshot, snapshot
        if previous is not None:
            log.info("configuration reloaded from %s: %d users, %d collections",
                     self.root, len(snapshot.users), len(snapshot.collections))
            log_problems(snapshot)
        change = changes(previous, snapshot)
        if change:
            for listener in self._listeners:
                task = asyncio.ensure_future(listener(change))
                self._notifications.add(task)
                task.add_done_callback(self._notifications.discard)

    async def stop(self):
        for task in list(self._notifications):
            task.cancel()


class FilesystemProvider(SnapshotSource):
    """A directory of YAML documents; re-read when their fingerprint changes."""

    def __init__(self, local_path: str, namespace: str, reload_interval: float = 5.0):
        super().__init__()
        self.root = os.path.join(os.path.expanduser(local_path), namespace)
        self.reload_interval = reload_interval
        self._task: Optional[asyncio.Task] = None

    def load(self) -> Snapshot:
        """Read everything now (blocking); used by one-shot commands."""
        self._snapshot = read_snapshot(self.root)
        return self._snapshot

    async def open(self):
        """Read everything once, before serving."""
        self.load()

    async def refresh(self) -> bool:
        """Re-read the documents if they changed; return True when a new snapshot was installed."""
        loop = asyncio.get_running_loop()
        stamp = await loop.run_in_executor(None, fingerprint, self.root)
        if self._snapshot is not None and stamp == self._snapshot.fingerprint:
            return False
        self.install(await loop.run_in_executor(None, read_snapshot, self.root))
        return True

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self):
        await super().stop()
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


def log_problems(snapshot: Snapshot):
    for problem in snapshot.problems:
        log.warning("configuration problem: %s", problem)
