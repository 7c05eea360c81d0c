"""The Kubernetes configuration provider: BackupUser and BackupCollection custom resources and the Secrets they
reference, read from one namespace of a cluster (docs/kubernetes.md).

A watched cache in the pattern of client-go's informer: list each kind, then watch from the list's
``resourceVersion`` (bookmarks on), reconnect with backoff, list again on ``410 Gone``. Requests never wait for the
API server: they read the last Snapshot, which the same parser as for files (config/provider.build_snapshot)
builds from the cached objects whenever one of them changes, parsing again only the objects that changed. Only the
Secrets that the configuration references are read: each is watched by name (as the kubelet watches the Secrets
of its pods), or, when the Role allows only ``get``, read again every 1.5 s; a rotated secret applies like any
edit.
"""

import asyncio
import base64
import binascii
import json
import logging
import os
import time

from backup_repository.config import documents as D
from backup_repository.config.provider import ConfigurationUnavailable as ClusterUnavailable
from backup_repository.config.provider import Parser, SnapshotSource, Source

log = logging.getLogger(__name__)

GROUP, VERSION = "backups.riotkit.org", "v1alpha1"
KINDS = {"backupusers": "BackupUser", "backupcollections": "BackupCollection"}
FIELD_MANAGER = "backup-repository"
#: How often a referenced Secret is read again when the Role does not allow watching it.
SECRET_INTERVAL = 1.5
#: Seconds of reading a Secret by ``get`` before trying again to watch it (the Role may have been widened).
WATCH_RETRY = 60.0
#: With more referenced Secrets than this, one watch of the namespace's Secrets replaces a watch per Secret (a
#: watch holds a connection, about 1 MiB of memory each), when the Role allows it.
SECRET_WATCHES_MAX = 8
#: Secrets per page when listing the namespace's (they can be large: Helm keeps its releases in Secrets).
SECRETS_PAGE = 50
#: Seconds a change waits for a Secret it newly refers to before it applies without it.
SECRET_WAIT = 2.0
#: Seconds a watch stays open before the server ends it and it is opened again from the last resourceVersion.
WATCH_SECONDS = 240
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0
#: Objects per page when listing.
LIST_PAGE = 500


async def api_client(kubeconfig: str = ""):
    """An API client the way users of the Go server expect: --kubeconfig, then KUBECONFIG, then in-cluster (the
    service-account token is re-read as the kubelet rotates it), then ~/.kube/config."""
    from kubernetes_asyncio import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    configuration = client.Configuration()
    if not path and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration, try_refresh_token=True)
    else:
        await config.load_kube_config(config_file=path or os.path.expanduser("~/.kube/config"),
                                      client_configuration=configuration)
    # watches hold their connection: one per kind and per referenced Secret, so no limit of 100
    configuration.connection_pool_maxsize = 0
    return client.ApiClient(configuration)


def describe_failure(exc: BaseException, namespace: str, what: str) -> str:
    """One line naming the cause: unreachable, TLS, 401, or 403 with verb, resource and namespace."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        if exc.status == 401:
            return "the API server refused the credentials (401 Unauthorized): check the token or certificate"
        if exc.status == 403:
            return (f"forbidden (403): the identity may not {what} in namespace {namespace!r}; "
                    "see the Role in docs/kubernetes.md")
        if exc.status == 404:
            return (f"not found (404) while trying to {what} in namespace {namespace!r}: are the CRDs of "
                    "packaging/kubernetes/crds installed?")
        return f"the API server answered {exc.status} {exc.reason} while trying to {what}"
    import ssl

    import aiohttp

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return f"TLS failed while connecting to the API server: {text}"
    return f"the API server cannot be reached: {text}"


class KubernetesProvider(SnapshotSource):
    """Serves the current Snapshot of one namespace's custom resources; see the module docstring."""

    def __init__(self, namespace: str, kubeconfig: str = "", start_timeout: float = 30.0, stale_after: float = 60.0):
        super().__init__()
        self.namespace = namespace
        self.root = f"namespace {namespace!r} of the Kubernetes cluster"
        self.kubeconfig = kubeconfig
        self.start_timeout = start_timeout
        self.stale_after = stale_after
        self._client = None
        self._objects = {plural: {} for plural in KINDS}
        self._versions = {plural: None for plural in KINDS}
        self._secrets = {}  # name -> (resourceVersion, decoded entries) of the referenced secrets
        self._secret_tasks = {}  # name -> the task following that Secret
        self._secrets_read = set()  # names of the Secrets read at least once (existing or not)
        self._wanted_secrets = frozenset()  # the referenced Secrets, as _follow_secrets last saw them
        self._namespace_task = None  # the watch of the namespace's Secrets, when there are many
        self._namespace_refused_until = 0.0
        self._namespace_said = False
        self._polling_said = False
        self._tasks = []
        self._changed = asyncio.Event()
        self._parser = Parser()
        self._failures = {}  # source (a plural, "secrets" or "secret <name>") -> why it is out of sync
        self._failing_since = 0.0

    # --- life cycle -------------------------------------------------------------------------------
    async def open(self):
        """Connect and list everything once, within ``start_timeout``; raise ClusterUnavailable naming the cause."""
        try:
            self._client = await api_client(self.kubeconfig)
        except Exception as exc:
            raise ClusterUnavailable(f"cannot load the cluster configuration: {' '.join(str(exc).split())}") \
                from None
        try:
            await asyncio.wait_for(self._list_everything(), self.start_timeout)
        except BaseException as exc:
            await self._client.close()
            self._client = None
            if isinstance(exc, asyncio.TimeoutError):
                raise ClusterUnavailable(f"the first list of {self.root} did not finish within "
                                         f"{self.start_timeout:g}s: the API server is unreachable or too slow") \
                    from None
            raise
        self._rebuild()

    async def _list_everything(self):
        for plural in KINDS:
            await self._list(plural)
        await self._read_secrets()

    def start(self):
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch(plural)) for plural in KINDS]
        self._tasks.append(loop.create_task(self._rebuild_on_change()))
        self._follow_secrets()

    async def stop(self):
        await super().stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        followers = [*self._secret_tasks.values(), *([self._namespace_task] if self._namespace_task else [])]
        for task in followers:
            task.cancel()
        for task in followers:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks, self._secret_tasks, self._namespace_task = [], {}, None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def check(self):
        """Raise OSError (for /ready) when the cache has been out of sync for longer than ``stale_after``."""
        if self._failures and time.monotonic() - self._failing_since > self.stale_after:
            raise OSError("; ".join(sorted(set(self._failures.values()))))

    # --- reading ------------------------------------------------------------------------------------
    def _custom_objects(self):
        from kubernetes_asyncio import client

        return client.CustomObjectsApi(self._client)

    async def _list(self, plural: str):
        """List every object of a kind, in pages (so that ten thousand objects never sit in memory as one
        answer), and keep them as compact cache entries."""
        objects, token = {}, None
        try:
            while True:
                listed = await self._custom_objects().list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, limit=LIST_PAGE, **({"_continue": token} if token else {}))
                for item in listed.get("items", []):
                    objects[item["metadata"]["name"]] = _Cached.of(item)
                token = listed["metadata"].get("continue")
                if not token:
                    break
        except Exception as exc:
            raise ClusterUnavailable(describe_failure(exc, self.namespace, f"list {plural}")) from None
        self._objects[plural] = objects
        self._versions[plural] = listed["metadata"]["resourceVersion"]
        self._in_sync(plural)
        self._changed.set()

    async def _watch(self, plural: str):
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        backoff = BACKOFF_FIRST
        while True:
            stream = watch.Watch()
            try:
                if self._versions[plural] is None:
                    await self._list(plural)
                async for event in stream.stream(
                        self._custom_objects().list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                        plural, resource_version=self._versions[plural], allow_watch_bookmarks=True,
                        timeout_seconds=WATCH_SECONDS):
                    self._apply(plural, event["type"], event["raw_object"])
                    backoff = BACKOFF_FIRST
                self._in_sync(plural)
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:  # the resourceVersion is too old: list again, nothing is lost
                    log.info("configuration: the watch of %s expired; listing again", plural)
                    self._versions[plural] = None
                    continue
                await self._out_of_sync(plural, describe_failure(exc, self.namespace, f"watch {plural}"), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except ClusterUnavailable as exc:  # from the list
                await self._out_of_sync(plural, str(exc), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as exc:
                await self._out_of_sync(plural, describe_failure(exc, self.namespace, f"watch {plural}"), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                stream.stop()
                await stream.close()

    def _apply(self, plural: str, kind: str, obj: dict):
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._versions[plural] = version
        if kind == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        self._in_sync(plural)
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
        """``source`` (a plural, or "secrets") was read successfully."""
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
    def shows_status(self, collection_id: str, status: dict) -> bool:
        """True when the BackupCollection shows ``status`` already (as last seen by the watch, or as this server
        last wrote it)."""
        entry = self._objects["backupcollections"].get(collection_id)
        return entry is not None and entry.status == status_text(status)

    async def write_status(self, collection_id: str, status: dict) -> bool:
        """Apply ``status`` to the BackupCollection's status subresource (server-side apply, field manager
        ``backup-repository``); False when the identity may not (then status is off), True when written."""
        from kubernetes_asyncio.client.exceptions import ApiException

        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupCollection",
                "metadata": {"name": collection_id}, "status": status}
        response = await self._custom_objects().patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "backupcollections", collection_id, body,
            field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
            _preload_content=False)  # the object it answers with is not needed
        async with response:
            if response.status == 403:
                return False
            if response.status == 404:  # deleted meanwhile
                return True
            if response.status >= 300:
                raise ApiException(status=response.status, reason=response.reason)
        entry = self._objects["backupcollections"].get(collection_id)
        if entry is not None:  # what it shows now, before the watch says so
            entry.status = status_text(status)
        return True

    # --- secrets ------------------------------------------------------------------------------------
    def _referenced_secrets(self) -> set:
        names = set()
        for plural in KINDS:
            for entry in self._objects[plural].values():
                names.update(entry.secrets)
        return names

    async def _watch_secret_events(self, core, version: str, **selector):
        """Watch Secrets from ``version`` (the namespace's, or one with a field selector) until the watch ends,
        recording what the referenced ones hold."""
        from kubernetes_asyncio import watch

        stream = watch.Watch()
        try:
            async for event in stream.stream(core.list_namespaced_secret, self.namespace, resource_version=version,
                                             allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS, **selector):
                obj = event["raw_object"]
                name = (obj.get("metadata") or {}).get("name")
                if name not in self._wanted_secrets:
                    continue
                if event["type"] == "DELETED":
                    self._set_secret(name, None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    self._set_secret(name, (obj["metadata"].get("resourceVersion"), _decode(obj)))
        finally:
            stream.stop()
            await stream.close()

    async def _get_secret(self, name: str):
        """GET one Secret: (resourceVersion, decoded entries), or None when it does not exist."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            # the raw answer (no model objects); without preloading, the client leaves its status to us
            response = await client.CoreV1Api(self._client).read_namespaced_secret(
                name, self.namespace, _preload_content=False)
            async with response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise ApiException(status=response.status, reason=response.reason)
                body = await response.json()
        except Exception as exc:
            raise ClusterUnavailable(describe_failure(exc, self.namespace, f"get secret {name}")) from None
        return body["metadata"].get("resourceVersion"), _decode(body)

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

    async def _read_secrets(self):
        """Read every referenced Secret once (at start-up)."""
        for name in sorted(self._referenced_secrets()):
            self._set_secret(name, await self._get_secret(name))

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
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        core, backoff = client.CoreV1Api(self._client), BACKOFF_FIRST
        while True:
            try:
                found, token = {}, None
                while True:
                    response = await core.list_namespaced_secret(
                        self.namespace, limit=SECRETS_PAGE, _preload_content=False,
                        **({"_continue": token} if token else {}))
                    async with response:
                        if response.status != 200:
                            raise ApiException(status=response.status, reason=response.reason)
                        page = await response.json()
                    for item in page.get("items") or ():
                        if item["metadata"]["name"] in self._wanted_secrets:
                            found[item["metadata"]["name"]] = (item["metadata"].get("resourceVersion"),
                                                               _decode(item))
                    token = page["metadata"].get("continue")
                    if not token:
                        break
                for name in self._wanted_secrets:
                    self._set_secret(name, found.get(name))
                self._in_sync("secrets")
                backoff = BACKOFF_FIRST
                await self._watch_secret_events(core, page["metadata"]["resourceVersion"])
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    continue
                if exc.status == 403:
                    log.info("configuration: %d Secrets are referenced and the Role does not allow list and watch "
                             "on the namespace's secrets: each is followed on its own "
                             "(docs/kubernetes.md#the-role-it-needs)", len(self._wanted_secrets))
                    self._namespace_refused_until = time.monotonic() + WATCH_RETRY
                    self._namespace_task = None
                    self._failures.pop("secrets", None)
                    self._changed.set()  # _follow_secrets starts the followers
                    return
                await self._out_of_sync("secrets", describe_failure(exc, self.namespace, "watch secrets"), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as exc:
                await self._out_of_sync("secrets", describe_failure(exc, self.namespace, "watch secrets"), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _follow_secret(self, name: str):
        """Watch one Secret (list and watch with a ``metadata.name`` field selector, as the kubelet does); when the
        Role allows only ``get``, read it every SECRET_INTERVAL instead and try watching again later."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        core, selector, source = client.CoreV1Api(self._client), f"metadata.name={name}", f"secret {name}"
        backoff, poll_until = BACKOFF_FIRST, 0.0
        while True:
            try:
                if time.monotonic() < poll_until:
                    self._set_secret(name, await self._get_secret(name))
                    self._in_sync(source)
                    await asyncio.sleep(SECRET_INTERVAL)
                    continue
                try:
                    listed = await core.list_namespaced_secret(self.namespace, field_selector=selector,
                                                               _preload_content=False)
                    async with listed:
                        if listed.status != 200:
                            raise ApiException(status=listed.status, reason=listed.reason)
                        body = await listed.json()
                except ApiException as exc:
                    if exc.status != 403:
                        raise
                    if not self._polling_said:
                        log.info("configuration: the Role allows get but not list and watch on secrets: the "
                                 "referenced Secrets are read every %gs (docs/kubernetes.md#the-role-it-needs)",
                                 SECRET_INTERVAL)
                        self._polling_said = True
                    poll_until = time.monotonic() + WATCH_RETRY
                    continue
                items = body.get("items") or []
                self._set_secret(name, (items[0]["metadata"].get("resourceVersion"), _decode(items[0]))
                                 if items else None)
                self._in_sync(source)
                backoff = BACKOFF_FIRST
                await self._watch_secret_events(core, body["metadata"]["resourceVersion"], field_selector=selector)
            except asyncio.CancelledError:
                raise
            except ClusterUnavailable as exc:
                await self._out_of_sync(source, str(exc), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except ApiException as exc:
                if exc.status == 410:
                    continue  # list again
                await self._out_of_sync(source, describe_failure(exc, self.namespace, f"watch secret {name}"),
                                        backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as exc:
                await self._out_of_sync(source, describe_failure(exc, self.namespace, f"watch secret {name}"),
                                        backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

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
                          lambda found, name=name, entries=entries: D.Document(
                              name, f"{self.namespace}/Secret/{name}", {"kind": "Secret", "data": entries}))
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


class _Cached:
    """What the server keeps of an object: its generation and resourceVersion, the Secrets it refers to, its status
    as JSON text, and its spec as JSON text (a fraction of the memory of the parsed tree) until it is parsed — kept
    after that only when it refers to a Secret, whose change makes it parsed again. Annotations (kubectl's
    last-applied-configuration repeats the whole object) and managedFields are not kept."""

    __slots__ = ("generation", "resource_version", "spec", "status", "secrets")

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
        return {"kind": kind, "spec": json.loads(self.spec)}


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


def _decode(secret: dict) -> dict:
    """The entries of a Secret as text: the API returns ``data`` base64-encoded (``stringData`` is write-only)."""
    entries = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            entries[key] = base64.b64decode(value or "").decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            entries[key] = ""
    return entries
