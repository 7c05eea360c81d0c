"""The Kubernetes configuration provider: BackupUser and BackupCollection custom resources and the Secrets they
reference, read from one namespace of a cluster (docs/kubernetes.md).

A watched cache in the pattern of client-go's informer: list each kind, then watch from the list's
``resourceVersion`` (bookmarks on), open the watch again when the API server ends it, list again on ``410 Gone``,
back off on failures. Every request is bounded in time (``--kube-request-timeout``), and a watch that hears
nothing, not even a bookmark, for 10 s longer than it asked the API server to keep it open
(``--kube-watch-timeout``) is cut and counts as a failure: a network that silently drops packets is noticed.
Requests never wait for the API server: they read the last Snapshot, which the same parser as for files
(config/provider.build_snapshot) builds from the cached objects whenever one of them changes, parsing again only
the objects that changed. Only the Secrets that the configuration references are read: each is watched by name
(as the kubelet watches the Secrets of its pods), or, when the Role allows only ``get``, read again every 1.5 s; a
rotated secret applies like any edit.
"""

import asyncio
import base64
import binascii
import functools
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Optional

from backup_repository.config import documents as D
from backup_repository.config import kube_api
from backup_repository.config.provider import ConfigurationUnavailable as ClusterUnavailable
from backup_repository.config.provider import Parser, SnapshotSource, Source, StatusWriter
from backup_repository.domain.collections import CollectionStatus
from backup_repository.domain.times import format_time
from backup_repository.domain.units import format_size

log = logging.getLogger(__name__)

GROUP, VERSION = "backups.riotkit.org", "v1alpha1"
KINDS = {"backupusers": "BackupUser", "backupcollections": "BackupCollection"}
FIELD_MANAGER = "backup-repository"
#: How often a referenced Secret is read again when the Role does not allow watching it.
SECRET_INTERVAL = 1.5
#: Seconds of reading a Secret by ``get`` before trying again to watch it (the Role may have been widened).
WATCH_RETRY = 60.0
#: With more referenced Secrets than this, one watch of the namespace's Secrets replaces a watch per Secret (a
#: watch holds a connection), when the Role allows it.
SECRET_WATCHES_MAX = 8
#: Secrets per page when listing the namespace's (they can be large: Helm keeps its releases in Secrets).
SECRETS_PAGE = 50
#: Seconds a change waits for a Secret it newly refers to before it applies without it.
SECRET_WAIT = 2.0
#: Seconds a watch may stay silent beyond the timeout it asked the API server for before it is cut.
WATCH_GRACE = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0
#: Objects per page when listing.
LIST_PAGE = 500


def describe_failure(exc: BaseException, namespace: str, what: str) -> str:
    """One line naming the cause: unreachable, silent, TLS, credentials, 401, or 403 with verb, resource and
    namespace."""
    if isinstance(exc, kube_api.ApiError):
        if exc.status == 401:
            return "the API server refused the credentials (401 Unauthorized): check the token or certificate"
        if exc.status == 403:
            return (f"forbidden (403): the identity may not {what} in namespace {namespace!r}; "
                    "see the Role in docs/kubernetes.md")
        if exc.status == 404:
            return (f"not found (404) while trying to {what} in namespace {namespace!r}: are the CRDs of "
                    "packaging/kubernetes/crds installed?")
        return f"the API server answered {exc.status} {exc.reason} while trying to {what}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, kube_api.ConfigError):
        return f"no credentials for the API server: {text}"
    if isinstance(exc, kube_api.Unanswered):
        return f"the API server did not answer while trying to {what}: {text}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed while connecting to the API server: {text}"
    return f"the API server cannot be reached: {text}"


class KubernetesProvider(SnapshotSource, StatusWriter):
    """Serves the current Snapshot of one namespace's custom resources; see the module docstring."""

    def __init__(self, namespace: str, kubeconfig: str = "", start_timeout: float = 30.0, stale_after: float = 60.0,
                 request_timeout: float = 10.0, watch_timeout: float = 60.0):
        super().__init__()
        self.namespace = namespace
        self.root = f"namespace {namespace!r} of the Kubernetes cluster"
        self.kubeconfig = kubeconfig
        self.start_timeout = start_timeout
        self.stale_after = stale_after
        self.request_timeout = request_timeout
        self.watch_timeout = max(1, round(watch_timeout))  # timeoutSeconds is a whole number
        self._api: Optional[kube_api.Client] = None  # from open()
        self._objects: dict[str, dict[str, _Cached]] = {plural: {} for plural in KINDS}
        self._versions: dict[str, Optional[str]] = {plural: None for plural in KINDS}
        self._secrets: dict[str, tuple] = {}  # name -> (resourceVersion, decoded entries) of the referenced secrets
        self._secret_tasks: dict[str, asyncio.Task] = {}  # name -> the task following that Secret
        self._secrets_read: set[str] = set()  # names of the Secrets read at least once (existing or not)
        self._wanted_secrets: set[str] = set()  # the referenced Secrets, as _follow_secrets last saw them
        # the watch of the namespace's Secrets, when there are many
        self._namespace_task: Optional[asyncio.Task] = None
        self._namespace_refused_until = 0.0
        self._namespace_said = False
        self._polling_said = False
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Event()
        self._parser = Parser()
        self._failures: dict[str, str] = {}  # source (a plural, "secrets" or "secret <name>") -> why it is out of sync
        self._failing_since = 0.0

    def _path(self, plural: str, *rest: str) -> str:
        base = (f"/api/v1/namespaces/{self.namespace}/secrets" if plural == "secrets"
                else f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{plural}")
        return "/".join((base, *rest))

    @property
    def api(self) -> kube_api.Client:
        """The API server's client (open() makes it)."""
        if self._api is None:
            raise RuntimeError("the Kubernetes provider is not open")
        return self._api

    # --- life cycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and list everything once, within ``start_timeout``; raise ClusterUnavailable naming the cause."""
        try:
            self._api = kube_api.Client(kube_api.load(self.kubeconfig), self.request_timeout)
        except kube_api.ConfigError as exc:
            raise ClusterUnavailable(f"cannot load the cluster configuration: {exc}") from None
        try:
            await asyncio.wait_for(self._list_everything(), self.start_timeout)
        except asyncio.TimeoutError:
            raise ClusterUnavailable(f"the first list of {self.root} did not finish within "
                                     f"{self.start_timeout:g}s: the API server is unreachable or too slow") from None
        self._rebuild()

    async def _list_everything(self):
        for plural in KINDS:
            try:
                await self._list(plural)
            except Exception as exc:
                raise ClusterUnavailable(describe_failure(exc, self.namespace, f"list {plural}")) from None
        for name in sorted(self._referenced_secrets()):
            self._set_secret(name, await self._get_secret(name))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch(plural)) for plural in KINDS]
        self._tasks.append(loop.create_task(self._rebuild_on_change()))
        self._follow_secrets()

    async def stop(self) -> None:
        await super().stop()
        tasks = [*self._tasks, *self._secret_tasks.values(), *([self._namespace_task] if self._namespace_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks, self._secret_tasks, self._namespace_task = [], {}, None

    def check(self) -> None:
        """Raise OSError (for /ready) when the cache has been out of sync for longer than ``stale_after``."""
        if self._failures and time.monotonic() - self._failing_since > self.stale_after:
            raise OSError("; ".join(sorted(set(self._failures.values()))))

    # --- list and watch -----------------------------------------------------------------------------
    async def _list_pages(self, path: str, params: dict, page: int, keep) -> str:
        """List in pages (ten thousand objects never sit in memory as one answer), each item to ``keep``; returns
        the list's resourceVersion."""
        token = None
        while True:
            listed = await self.api.json("GET", path, {**params, "limit": page, "continue": token})
            for item in listed.get("items") or ():
                keep(item)
            token = listed["metadata"].get("continue")
            if not token:
                return listed["metadata"]["resourceVersion"]

    async def _informer(self, source: str, what: str, path: str, params: dict, listed: Callable[[], Awaitable[str]],
                        event: Callable[[str, dict], None], version: Optional[str] = None,
                        give_up_when_forbidden: bool = False) -> None:
        """Follow ``path`` the way client-go's informers do: ``listed()`` (a list, returning its resourceVersion)
        unless ``version`` is known, then watches from the last version seen, each event to ``event(type,
        object)``; a list again after 410 Gone; backoff after failures, each reported once under ``source``.
        Returns only when ``give_up_when_forbidden`` and the list or watch is forbidden (403)."""
        backoff = BACKOFF_FIRST
        seen: dict[str, Optional[str]] = {"version": version}

        def on_event(message: dict):
            kind, obj = str(message.get("type") or ""), message.get("object") or {}
            if kind == "ERROR":  # in the stream: 410 Gone when the version is too old
                raise kube_api.ApiError(obj.get("code") or 500, obj.get("reason") or "Error",
                                        json.dumps(obj).encode())
            seen["version"] = (obj.get("metadata") or {}).get("resourceVersion") or seen["version"]
            self._in_sync(source)  # a bookmark, too, shows the watch is alive
            if kind != "BOOKMARK":
                event(kind, obj)

        while True:
            try:
                if seen["version"] is None:
                    seen["version"] = await listed()
                    self._in_sync(source)
                await self.api.watch(path, {**params, "resourceVersion": seen["version"],
                                             "allowWatchBookmarks": "true", "timeoutSeconds": self.watch_timeout},
                                      on_event, silence=self.watch_timeout + WATCH_GRACE)
                self._in_sync(source)
                backoff = BACKOFF_FIRST
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status == 410:  # the resourceVersion is too old: list again, nothing is lost
                    log.info("configuration: the watch of %s expired; listing again", source)
                    seen["version"] = None
                    continue
                if status == 403 and give_up_when_forbidden:
                    return
                await self._out_of_sync(source, describe_failure(exc, self.namespace, what), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _list(self, plural: str) -> str:
        """List every object of a kind and keep them as compact cache entries; returns the resourceVersion."""
        objects: dict[str, _Cached] = {}
        version = await self._list_pages(self._path(plural), {}, LIST_PAGE,
                                         lambda item: objects.__setitem__(item["metadata"]["name"], _Cached.of(item)))
        self._objects[plural], self._versions[plural] = objects, version
        self._changed.set()
        return version

    async def _watch(self, plural: str):
        def event(kind: str, obj: dict):
            self._versions[plural] = obj["metadata"].get("resourceVersion") or self._versions[plural]
            self._apply(plural, kind, obj)

        await self._informer(plural, f"watch {plural}", self._path(plural), {}, lambda: self._list(plural), event,
                             version=self._versions[plural])

    def _apply(self, plural: str, kind: str, obj: dict):
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self._objects[plural].pop(name, None)
            self._changed.set()
            return
        entry, before = _Cached.of(obj), self._objects[plural].get(name)
        if before is not None and entry.generation is not None and entry.generation == before.generation:
            before.resource_version, before.status = entry.resource_version, entry.status  # the status only
            return
        self._objects[plural][name] = entry
        self._changed.set()

    def _in_sync(self, source: str):
        """``source`` (a plural, "secrets" or "secret <name>") was read successfully."""
        if self._failures.pop(source, None) is not None and not self._failures:
            log.info("configuration: in sync with the API server again")

    async def _out_of_sync(self, source: str, cause: str, backoff: float):
        """Reading ``source`` failed: say so once per cause (not once per retry), then wait ``backoff``."""
        if self._failures.get(source) != cause:
            log.error("configuration provider is not usable: %s (serving the last configuration read; retrying)",
                      cause)
        if not self._failures:
            self._failing_since = time.monotonic()
        self._failures[source] = cause
        await asyncio.sleep(backoff)

    # --- status -------------------------------------------------------------------------------------
    def shows_status(self, collection_id: str, status: CollectionStatus) -> bool:
        """True when the BackupCollection shows ``status`` already (as last seen by the watch, or as this server
        last wrote it)."""
        entry = self._objects["backupcollections"].get(collection_id)
        return entry is not None and entry.status == status_text(status_document(status))

    async def write_status(self, collection_id: str, status: CollectionStatus) -> Optional[bool]:
        """Apply ``status`` to the BackupCollection's status subresource (server-side apply, field manager
        ``backup-repository``): True when written (or the resource is gone), False when the identity may not,
        None when the resource has no status subresource (CRDs of the Go server: see can_show_status)."""
        document = status_document(status)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupCollection",
                "metadata": {"name": collection_id}, "status": document}
        code, answer = await self.api.request(
            "PATCH", self._path("backupcollections", collection_id, "status"),
            {"fieldManager": FIELD_MANAGER, "force": "true"}, body, "application/apply-patch+yaml")
        if code == 403:
            return False
        if code == 404:  # deleted meanwhile, or no status subresource: the API server says the same of both
            exists, _ = await self.api.request("GET", self._path("backupcollections", collection_id))
            return None if exists == 200 else True
        if code >= 300:
            raise kube_api.ApiError(code, "Error", answer)
        entry = self._objects["backupcollections"].get(collection_id)
        if entry is not None:  # what it shows now, before the watch says so
            entry.status = status_text(document)
        return True

    async def can_show_status(self) -> bool:
        """Whether BackupCollections have a status subresource now (the CRDs may be upgraded while the server
        runs): a GET of a collection's status (and of the collection, when that is 404)."""
        for name in self._objects["backupcollections"]:
            code, _ = await self.api.request("GET", self._path("backupcollections", name, "status"))
            if code == 404:
                exists, _ = await self.api.request("GET", self._path("backupcollections", name))
                return exists != 200
            return True
        return True

    # --- secrets ------------------------------------------------------------------------------------
    def _referenced_secrets(self) -> set[str]:
        names: set[str] = set()
        for plural in KINDS:
            for entry in self._objects[plural].values():
                names.update(entry.secrets)
        return names

    async def _get_secret(self, name: str):
        """GET one Secret: (resourceVersion, decoded entries), or None when it does not exist."""
        try:
            body = await self.api.json("GET", self._path("secrets", name), missing_ok=True)
        except Exception as exc:
            raise ClusterUnavailable(describe_failure(exc, self.namespace, f"get secret {name}")) from None
        return None if body is None else _secret_entry(body)

    def _set_secret(self, name: str, entry) -> bool:
        """Record what a Secret holds now (None: it does not exist); True when that changed."""
        self._secrets_read.add(name)
        if self._secrets.get(name) == entry:
            return False
        if entry is None:
            self._secrets.pop(name, None)
        else:
            self._secrets[name] = entry
        self._changed.set()
        return True

    def _follow_secrets(self):
        """Follow the referenced Secrets: one watch per Secret, or — when there are more than SECRET_WATCHES_MAX and
        the Role allows it — one watch of the namespace's Secrets. Those no longer referenced are forgotten."""
        wanted, before = self._referenced_secrets(), self._wanted_secrets
        self._wanted_secrets = wanted
        loop = asyncio.get_running_loop()
        for name in set(self._secrets) - wanted:
            self._secrets.pop(name, None)
        self._secrets_read &= wanted
        if len(wanted) > SECRET_WATCHES_MAX and time.monotonic() >= self._namespace_refused_until:
            for name in list(self._secret_tasks):
                self._secret_tasks.pop(name).cancel()
                self._failures.pop(f"secret {name}", None)
            if self._namespace_task is not None and wanted - before:
                self._namespace_task.cancel()  # a Secret it skipped is wanted now: list again
                self._namespace_task = None
            if self._namespace_task is None:
                if not self._namespace_said:
                    log.info("configuration: %d Secrets are referenced: one watch of the namespace's Secrets "
                             "follows them (only the referenced ones are kept)", len(wanted))
                    self._namespace_said = True
                self._namespace_task = loop.create_task(self._watch_namespace_secrets())
            return
        if self._namespace_task is not None:
            self._namespace_task.cancel()
            self._namespace_task = None
            self._failures.pop("secrets", None)
        for name in wanted - set(self._secret_tasks):
            self._secret_tasks[name] = loop.create_task(self._follow_secret(name))
        for name in set(self._secret_tasks) - wanted:
            self._secret_tasks.pop(name).cancel()
            self._failures.pop(f"secret {name}", None)

    async def _watch_namespace_secrets(self):
        """One list and watch of the namespace's Secrets, keeping only the referenced ones (the others are skipped
        unread). When the Role does not allow it, the Secrets are followed one by one instead."""
        async def listed():
            found = {}

            def keep(item):
                if item["metadata"]["name"] in self._wanted_secrets:
                    found[item["metadata"]["name"]] = _secret_entry(item)

            version = await self._list_pages(self._path("secrets"), {}, SECRETS_PAGE, keep)
            for name in self._wanted_secrets:
                self._set_secret(name, found.get(name))
            return version

        def event(kind: str, obj: dict):
            name = obj["metadata"].get("name")
            if name in self._wanted_secrets:
                self._set_secret(name, None if kind == "DELETED" else _secret_entry(obj))

        await self._informer("secrets", "watch secrets", self._path("secrets"), {}, listed, event,
                             give_up_when_forbidden=True)
        log.info("configuration: %d Secrets are referenced and the Role does not allow list and watch on the "
                 "namespace's secrets: each is followed on its own (docs/kubernetes.md#the-role-it-needs)",
                 len(self._wanted_secrets))
        self._namespace_refused_until = time.monotonic() + WATCH_RETRY
        self._namespace_task = None
        self._failures.pop("secrets", None)
        self._changed.set()  # _follow_secrets starts the followers

    async def _follow_secret(self, name: str):
        """Watch one Secret (list and watch with a ``metadata.name`` field selector, as the kubelet does); when the
        Role allows only ``get``, read it every SECRET_INTERVAL instead and try watching again later."""
        source, params = f"secret {name}", {"fieldSelector": f"metadata.name={name}"}

        async def listed():
            items: list[dict] = []
            version = await self._list_pages(self._path("secrets"), params, SECRETS_PAGE, items.append)
            self._set_secret(name, _secret_entry(items[0]) if items else None)
            return version

        def event(kind: str, obj: dict):
            self._set_secret(name, None if kind == "DELETED" else _secret_entry(obj))

        while True:
            await self._informer(source, f"watch secret {name}", self._path("secrets"), params, listed, event,
                                 give_up_when_forbidden=True)
            if not self._polling_said:
                log.info("configuration: the Role allows get but not list and watch on secrets: the referenced "
                         "Secrets are read every %gs (docs/kubernetes.md#the-role-it-needs)", SECRET_INTERVAL)
                self._polling_said = True
            backoff, until = BACKOFF_FIRST, time.monotonic() + WATCH_RETRY
            while time.monotonic() < until:
                try:
                    self._set_secret(name, await self._get_secret(name))
                except ClusterUnavailable as exc:
                    await self._out_of_sync(source, str(exc), backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                self._in_sync(source)
                backoff = BACKOFF_FIRST
                await asyncio.sleep(SECRET_INTERVAL)

    # --- the snapshot -------------------------------------------------------------------------------
    async def _rebuild_on_change(self):
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)  # a burst of events makes one rebuild
            self._changed.clear()
            self._follow_secrets()
            # a user that refers to a Secret not read yet would be reported as missing it: wait (briefly) for it
            deadline, wanted = time.monotonic() + SECRET_WAIT, self._referenced_secrets()
            while wanted - self._secrets_read and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self._changed.clear()
            self._rebuild()

    def _rebuild(self):
        """A Snapshot from the cached objects: only those whose resourceVersion changed are parsed again."""
        sources = {}
        for plural, kind in KINDS.items():
            sources[kind] = [_source(name, f"{self.namespace}/{kind}/{name}", obj, kind)
                             for name, obj in sorted(self._objects[plural].items())]
        secrets = [Source(name, f"{self.namespace}/Secret/{name}", version,
                          functools.partial(_secret_document, name, f"{self.namespace}/Secret/{name}", entries))
                   for name, (version, entries) in sorted(self._secrets.items())]
        snapshot = self._parser.build(secrets, sources["BackupUser"], sources["BackupCollection"],
                                      stamp=tuple(sorted(self._versions.items())),
                                      user_names=frozenset(self._objects["backupusers"]))
        for plural in KINDS:
            for entry in self._objects[plural].values():
                if not entry.secrets:  # parsed; only a change of a Secret it refers to would need its spec again
                    entry.spec = None
        self.install(snapshot)


def _source(name: str, location: str, entry: "_Cached", kind: str) -> Source:
    # the generation changes with the spec only (not with the status this server writes)
    return Source(name, location, entry.generation or entry.resource_version,
                  lambda found: D.make_document(name, location, entry.body(kind), kind, found))


def _secret_document(name: str, location: str, entries: dict, found: list) -> D.Document:
    return D.Document(name, location, {"kind": "Secret", "data": entries})


class _Cached:
    """What the server keeps of an object: its generation and resourceVersion, the Secrets it refers to, its status
    as JSON text, and its spec as JSON text (a fraction of the memory of the parsed tree) until it is parsed — kept
    after that only when it refers to a Secret, whose change makes it parsed again. Annotations (kubectl's
    last-applied-configuration repeats the whole object) and managedFields are not kept."""

    __slots__ = ("generation", "resource_version", "spec", "status", "secrets")
    generation: Optional[int]
    resource_version: Optional[str]
    spec: Optional[str]
    status: Optional[str]
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, obj: dict) -> "_Cached":
        metadata, spec = obj.get("metadata") or {}, obj.get("spec")
        entry = cls()
        entry.generation, entry.resource_version = metadata.get("generation"), metadata.get("resourceVersion")
        entry.spec = json.dumps(spec, separators=(",", ":"))
        entry.status = None if obj.get("status") is None else status_text(obj["status"])
        entry.secrets = _secrets_of(spec)  # a tuple: most are empty, and an empty tuple is shared
        return entry

    def body(self, kind: str) -> dict:
        if self.spec is None:  # dropped once parsed, unless the object refers to a Secret (_rebuild)
            raise RuntimeError(f"the spec of a {kind} was asked for after it was parsed and dropped")
        return {"kind": kind, "spec": json.loads(self.spec)}


def status_document(status: CollectionStatus) -> dict:
    """A collection's status as the BackupCollection shows it: the fields of the CRD's ``status`` schema
    (packaging/kubernetes/crds, docs/kubernetes.md#status); ``latestVersionAt`` to the second, left out without a
    version."""
    usage = status.usage
    document = {"versionsCount": usage.versions_count, "usedBytes": usage.used_bytes,
                "used": format_size(usage.used_bytes), "healthy": status.healthy,
                "message": "; ".join(f"{name}: {message}" for name, message in status.failed)}
    if usage.latest_version_at is not None:
        document["latestVersionAt"] = format_time(usage.latest_version_at.replace(microsecond=0))
    return document


def status_text(status: dict) -> str:
    """A status as canonical JSON text: equal statuses give equal texts, whoever wrote them."""
    return json.dumps(status, sort_keys=True, separators=(",", ":"))


def _secrets_of(spec) -> tuple:
    """Names of the Secrets a spec refers to: passwordFromRef (user, access keys) and healthSecretRef."""
    if not isinstance(spec, dict):
        return ()
    refs = [spec.get("passwordFromRef"), spec.get("healthSecretRef")]
    refs += [key.get("passwordFromRef") for key in spec.get("accessKeys") or () if isinstance(key, dict)]
    return tuple(sorted({ref["name"] for ref in refs if isinstance(ref, dict) and isinstance(ref.get("name"), str)}))


def _secret_entry(secret: dict) -> tuple:
    """What is kept of a Secret: (resourceVersion, decoded entries)."""
    return secret["metadata"].get("resourceVersion"), _decode(secret)


def _decode(secret: dict) -> dict:
    """The entries of a Secret as text: the API returns ``data`` base64-encoded (``stringData`` is write-only)."""
    entries = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            entries[key] = base64.b64decode(value or "").decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            entries[key] = ""
    return entries
