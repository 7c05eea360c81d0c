"""Configuration providers: what they share — the ``Snapshot`` the services read, the ``SnapshotSource`` every
provider is, and the incremental ``Parser``. The providers themselves are ``filesystem.py`` (a directory of YAML
documents, watched for changes: GitOps) and ``kubernetes.py`` (custom resources of a cluster).

Documents are parsed into an immutable ``Snapshot``, which requests read without touching the disk. A provider
offers its documents as ``Source``s with a version; the ``Parser`` reads and parses again only those whose version
changed (or whose Secrets did), so an edit applies within a second or two whatever the number of documents.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

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
    #: {user name: ids (sorted) of the collections whose accessControl names the user}
    granted: Optional[dict] = None
    #: valid settings a user coming from the Go server may not expect (config/documents.py); they break nothing
    warnings: tuple = ()


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


@dataclass(frozen=True, slots=True)
class Source:
    """One document as a provider offers it, not read yet: ``version`` changes whenever the document does (a file's
    size, modification time and inode; an object's resourceVersion; None: always read), and ``load(problems)``
    returns its Document, or None with the reason appended to ``problems``."""

    id: str
    location: str
    version: object
    load: Callable


@dataclass(frozen=True, slots=True)
class _Parsed:
    version: object
    uses: tuple  # ((secret name, the parsed Secret the document saw, or None), ...)
    result: object
    problems: tuple
    warnings: tuple


class _SecretsSeen:
    """The parsed secrets, recording which ones a document looked up (``documents`` only calls ``get``)."""

    def __init__(self, secrets: dict):
        self._secrets = secrets
        self.used = {}

    def get(self, name):
        secret = self.used[name] = self._secrets.get(name)
        return secret


class Parser:
    """One parser for every source (files, an API server), incremental: a document is read and parsed again only
    when its version changed or a Secret it refers to did; everything else is the object parsed before. So an
    edit costs what the edited document costs, whatever the number of users and collections, and no document
    body is kept in memory between builds."""

    def __init__(self):
        self._parsed = {}  # (kind, id) -> _Parsed

    def build(self, secrets, users, collections, problems=(), stamp=(), user_names=None) -> Snapshot:
        """Sources of each kind -> a Snapshot. A bad document breaks only its own object; ``problems`` already holds
        what went wrong while listing the sources."""
        problems, warnings = list(problems), []
        previous, self._parsed = self._parsed, {}
        parsed_secrets = {source.id: self._parse("Secret", source, D.parse_secret, None, previous, problems,
                                                 warnings)
                          for source in secrets}
        parsed_users = {}
        for source in users:
            user = self._parse("BackupUser", source, D.parse_user, parsed_secrets, previous, problems, warnings)
            if user is not None:
                parsed_users[user.name] = user
        parsed_collections, paths, grants = {}, {}, {}
        for source in collections:
            collection = self._parse("BackupCollection", source, D.parse_collection, parsed_secrets, previous,
                                     problems, warnings)
            if collection is not None:
                parsed_collections[collection.id] = collection
                paths[collection.id] = source.location

        for collection in parsed_collections.values():
            for index, grant in enumerate(collection.access_control):
                if grant.type != "user":
                    continue
                if grant.name not in parsed_users:
                    problems.append(D.Problem(paths[collection.id], f"spec.accessControl[{index}]",
                                              f"unknown user {grant.name!r}"))
                grants.setdefault(grant.name, set()).add(collection.id)
        return Snapshot(parsed_users, parsed_collections, tuple(problems), stamp, user_names,
                        {name: tuple(sorted(ids)) for name, ids in grants.items()}, tuple(warnings))

    def _parse(self, kind, source, parser, secrets, previous, problems, warnings):
        key = (kind, source.id)
        entry = previous.get(key)
        if (entry is None or source.version is None or entry.version != source.version
                or any(secrets.get(name) is not seen for name, seen in entry.uses)):
            found, noted = [], []
            document = source.load(found)
            result, uses = None, ()
            if document is not None:
                if secrets is None:
                    result = _parse(document, parser, (), found, noted)
                else:
                    seen = _SecretsSeen(secrets)
                    result = _parse(document, parser, (seen,), found, noted)
                    uses = tuple(seen.used.items())
            entry = _Parsed(source.version, uses, result, tuple(found), tuple(noted))
        self._parsed[key] = entry
        problems.extend(entry.problems)
        warnings.extend(entry.warnings)
        return entry.result


def build_snapshot(secrets, users, collections, problems=(), stamp=(), user_names=None) -> Snapshot:
    """Documents already read -> a Snapshot (one-shot; providers keep a Parser)."""
    def sources(documents):
        return [Source(d.id, d.path, None, lambda found, d=d: d) for d in documents]

    return Parser().build(sources(secrets), sources(users), sources(collections), problems, stamp, user_names)


def _parse(document, parser, args, problems, warnings):
    """Parse one document; its problems go to ``problems``, and its warnings to ``warnings`` when the object is
    loaded (a warning about an object that is not loaded would say nothing useful)."""
    try:
        result = parser(document, *args)
    except D.DocumentError as exc:
        document.problems.append(D.Problem(document.path, exc.field, exc.message + "; the object is not loaded"))
        return None
    finally:
        problems.extend(document.problems)
    warnings.extend(document.warnings)
    return result


class SnapshotSource:
    """What every configuration provider offers the services: the current Snapshot, lookups in it, and a
    notification of what a reload removed or changed (``on_change``). A provider installs each new Snapshot with
    ``install()``; ``open()`` reads the first one, ``start()``/``stop()`` run the watch, ``check()`` raises
    OSError when the source is not usable (``/ready``)."""

    root = ""

    def __init__(self):
        self._snapshot: Optional[Snapshot] = None
        self.loaded_at = 0.0  # when a Snapshot was last installed, unix seconds (docs/monitoring.md)
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
        self.loaded_at = time.time()
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


def log_problems(snapshot: Snapshot):
    for problem in snapshot.problems:
        log.warning("configuration problem: %s", problem)
