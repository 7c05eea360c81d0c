"""Configuration providers: what they share — the ``Snapshot`` the services read, the ``SnapshotSource`` every
provider is, the ``StatusWriter`` a provider may also be, and the incremental ``Parser``. The providers themselves
are ``filesystem.py`` (a directory of YAML documents, watched for changes: GitOps) and ``kubernetes.py`` (custom
resources of a cluster). What the services and the context need of a provider is services/ports.py's
``Configuration`` and ``ConfigurationProvider``; every SnapshotSource is both.

Documents are parsed into an immutable ``Snapshot``, which requests read without touching the disk. A provider
offers its documents as ``Source``s with a version; the ``Parser`` reads and parses again only those whose version
changed (or whose Secrets did), so an edit applies within a second or two whatever the number of documents.
"""

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

from backup_repository.config import documents as D
from backup_repository.domain.collections import Collection, CollectionStatus
from backup_repository.domain.users import User

log = logging.getLogger(__name__)


class ConfigurationUnavailable(Exception):
    """The configuration source cannot be read at start-up (e.g. the Kubernetes API server); the message says why."""


@dataclass(frozen=True)
class Snapshot:
    users: dict[str, User]
    collections: dict[str, Collection]
    problems: tuple
    fingerprint: tuple
    #: names of every BackupUser file, loadable or not (None when the directory could not be listed)
    user_files: Optional[frozenset[str]] = None
    #: {user name: ids (sorted) of the collections whose accessControl names the user}
    granted: Optional[dict[str, tuple[str, ...]]] = None
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


def changes(old: Optional[Snapshot], new: Snapshot) -> Change:
    if old is None or new.user_files is None:
        return Change()
    removed_users = tuple(sorted(name for name in old.users if name not in new.user_files))
    removed_keys: list[tuple[str, str]] = []
    changed: list[tuple[str, str, Optional[str]]] = []
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
    load: Callable[[list], Optional[D.Document]]


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
        self.used: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        secret = self.used[name] = self._secrets.get(name)
        return secret


class Parser:
    """One parser for every source (files, an API server), incremental: a document is read and parsed again only
    when its version changed or a Secret it refers to did; everything else is the object parsed before. So an
    edit costs what the edited document costs, whatever the number of users and collections, and no document
    body is kept in memory between builds."""

    def __init__(self):
        self._parsed: dict[tuple[str, str], _Parsed] = {}

    def build(self, secrets: Iterable[Source], users: Iterable[Source], collections: Iterable[Source],
              problems: Iterable[D.Problem] = (), stamp: tuple = (),
              user_names: Optional[frozenset[str]] = None) -> Snapshot:
        """Sources of each kind -> a Snapshot. A bad document breaks only its own object; ``problems`` already holds
        what went wrong while listing the sources."""
        problems = list(problems)
        warnings: list[D.Problem] = []
        previous, self._parsed = self._parsed, {}
        parsed_secrets = {source.id: self._parse("Secret", source, D.parse_secret, None, previous, problems,
                                                 warnings)
                          for source in secrets}
        parsed_users: dict[str, User] = {}
        for source in users:
            user = self._parse("BackupUser", source, D.parse_user, parsed_secrets, previous, problems, warnings)
            if user is not None:
                parsed_users[user.name] = user
        parsed_collections: dict[str, Collection] = {}
        paths: dict[str, str] = {}
        grants: dict[str, set[str]] = {}
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

    def _parse(self, kind: str, source: Source, parser: Callable, secrets: Optional[dict],
               previous: dict[tuple[str, str], _Parsed], problems: list[D.Problem], warnings: list[D.Problem]) -> Any:
        key = (kind, source.id)
        entry = previous.get(key)
        if (entry is None or source.version is None or entry.version != source.version
                or (secrets is not None and any(secrets.get(name) is not seen for name, seen in entry.uses))):
            found: list[D.Problem] = []
            noted: list[D.Problem] = []
            document = source.load(found)
            result: Any = None
            uses: tuple[tuple[str, Any], ...] = ()
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


def build_snapshot(secrets: Iterable[D.Document], users: Iterable[D.Document], collections: Iterable[D.Document],
                   problems: Iterable[D.Problem] = (), stamp: tuple = (),
                   user_names: Optional[frozenset[str]] = None) -> Snapshot:
    """Documents already read -> a Snapshot (one-shot; providers keep a Parser)."""
    def sources(documents: Iterable[D.Document]) -> list[Source]:
        return [Source(d.id, d.path, None, _read_already(d)) for d in documents]

    return Parser().build(sources(secrets), sources(users), sources(collections), problems, stamp, user_names)


def _read_already(document: D.Document) -> Callable[[list], D.Document]:
    return lambda found: document


def _parse(document: D.Document, parser: Callable, args: tuple, problems: list[D.Problem],
           warnings: list[D.Problem]) -> Any:
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


#: What ``on_change`` calls after a reload that removed users or keys, or set a password anew.
ChangeListener = Callable[[Change], Awaitable[None]]


class SnapshotSource(abc.ABC):
    """What every configuration provider offers the services: the current Snapshot, lookups in it, and a
    notification of what a reload removed or changed (``on_change``). A provider installs each new Snapshot with
    ``install()``; ``open()`` reads the first one, ``start()``/``stop()`` run the watch, ``check()`` raises
    OSError when the source is not usable (``/ready``)."""

    root = ""

    def __init__(self):
        self._snapshot: Optional[Snapshot] = None
        self.loaded_at = 0.0  # when a Snapshot was last installed, unix seconds (docs/monitoring.md)
        self._listeners: list[ChangeListener] = []
        self._notifications: set[asyncio.Future] = set()

    @abc.abstractmethod
    async def open(self) -> None:
        """Read the first Snapshot, before serving; raise ConfigurationUnavailable saying why it cannot."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start watching for changes (on the running event loop)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise OSError when the source is not usable (``/ready``)."""

    def on_change(self, listener: ChangeListener) -> None:
        """``await listener(change)`` runs (in the background) after each reload that removed users or keys, or set
        a password anew."""
        self._listeners.append(listener)

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("the configuration has not been read yet (open() reads it)")
        return self._snapshot

    def user(self, name: str) -> Optional[User]:
        return self.snapshot.users.get(name)

    def collection(self, collection_id: str) -> Optional[Collection]:
        return self.snapshot.collections.get(collection_id)

    def install(self, snapshot: Snapshot) -> None:
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

    async def stop(self) -> None:
        for task in list(self._notifications):
            task.cancel()


@runtime_checkable
class StatusWriter(Protocol):
    """What a provider may offer besides its snapshots: showing each collection's status to the people who
    configure it (Kubernetes: the BackupCollection's status subresource; services/status.py writes it). A provider
    that can names it as a base class, so that the type checker holds its methods to these; the context asks once,
    at start, whether its provider is one."""

    def shows_status(self, collection_id: str, status: CollectionStatus) -> bool:
        """True when the collection shows ``status`` already."""
        ...

    async def write_status(self, collection_id: str, status: CollectionStatus) -> Optional[bool]:
        """Show ``status``: True when written (or the collection is gone), False when not allowed, None when the
        source cannot show status yet (see can_show_status)."""
        ...

    async def can_show_status(self) -> bool:
        """Whether status can be shown now (checked again after write_status answered None)."""
        ...


def log_problems(snapshot: Snapshot) -> None:
    for problem in snapshot.problems:
        log.warning("configuration problem: %s", problem)
