"""The Kubernetes configuration provider: BackupUser and BackupCollection custom resources and the Secrets they
reference, read from one namespace of a cluster (docs/kubernetes.md).

A watched cache in the pattern of client-go's informer: list each kind, then watch from the list's
``resourceVersion`` (bookmarks on), reconnect with backoff, list again on ``410 Gone``. Requests never wait for the
API server: they read the last Snapshot, which the same parser as for files (config/provider.build_snapshot)
builds from the cached objects whenever one of them changes. Only the Secrets that the configuration references
are read (by name, ``get``), and re-read every few seconds so that a rotated secret applies like any edit.
"""

import asyncio
import base64
import binascii
import logging
import os
import time

from backup_repository.config import documents as D
from backup_repository.config.provider import ConfigurationUnavailable as ClusterUnavailable
from backup_repository.config.provider import SnapshotSource, build_snapshot

log = logging.getLogger(__name__)

GROUP, VERSION = "backups.riotkit.org", "v1alpha1"
KINDS = {"backupusers": "BackupUser", "backupcollections": "BackupCollection"}
FIELD_MANAGER = "backup-repository"
#: How often the referenced Secrets are read again (a rotated password applies within this).
SECRET_INTERVAL = 1.5
#: Seconds a watch stays open before the server ends it and it is opened again from the last resourceVersion.
WATCH_SECONDS = 240
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0


async def api_client(kubeconfig: str = ""):
    """An API client the way users of the Go server expect: --kubeconfig, then KUBECONFIG, then in-cluster (the
    service-account token is re-read as the kubelet rotates it), then ~/.kube/config."""
    from kubernetes_asyncio import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if path:
        return await config.new_client_from_config(config_file=path)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration, try_refresh_token=True)
        return client.ApiClient(configuration)
    return await config.new_client_from_config(config_file=os.path.expanduser("~/.kube/config"))


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
        self._tasks = []
        self._changed = asyncio.Event()
        self._failures = {}  # source (a plural, or "secrets") -> the cause it is out of sync
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
        self._tasks += [loop.create_task(self._refresh_secrets()), loop.create_task(self._rebuild_on_change())]

    async def stop(self):
        await super().stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
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
        try:
            listed = await self._custom_objects().list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                                                plural)
        except Exception as exc:
            raise ClusterUnavailable(describe_failure(exc, self.namespace, f"list {plural}")) from None
        self._objects[plural] = {item["metadata"]["name"]: item for item in listed.get("items", [])}
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
        if kind == "DELETED":
            self._objects[plural].pop(name, None)
        else:
            self._objects[plural][name] = obj
        self._in_sync(plural)
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
    async def write_status(self, collection_id: str, status: dict) -> bool:
        """Apply ``status`` to the BackupCollection's status subresource (server-side apply, field manager
        ``backup-repository``); False when the identity may not (then status is off), True when written."""
        from kubernetes_asyncio.client.exceptions import ApiException

        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupCollection",
                "metadata": {"name": collection_id}, "status": status}
        try:
            await self._custom_objects().patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, "backupcollections", collection_id, body,
                field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml")
        except ApiException as exc:
            if exc.status == 403:
                return False
            if exc.status == 404:  # deleted meanwhile
                return True
            raise
        return True

    # --- secrets ------------------------------------------------------------------------------------
    def _referenced_secrets(self) -> set:
        names = set()

        def ref(value):
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                names.add(value["name"])

        for obj in self._objects["backupusers"].values():
            spec = obj.get("spec") or {}
            ref(spec.get("passwordFromRef"))
            for key in spec.get("accessKeys") or ():
                if isinstance(key, dict):
                    ref(key.get("passwordFromRef"))
        for obj in self._objects["backupcollections"].values():
            ref((obj.get("spec") or {}).get("healthSecretRef"))
        return names

    async def _read_secrets(self) -> bool:
        """Read the referenced Secrets; True when one of them changed (or appeared, or went away)."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        core = client.CoreV1Api(self._client)
        wanted, changed = self._referenced_secrets(), False
        for name in sorted(wanted):
            try:
                # the raw answer (no model objects); without preloading, the client leaves its status to us
                response = await core.read_namespaced_secret(name, self.namespace, _preload_content=False)
                async with response:
                    if response.status != 200:
                        raise ApiException(status=response.status, reason=response.reason)
                    body = await response.json()
            except ApiException as exc:
                if exc.status == 404:
                    body = None
                else:
                    raise ClusterUnavailable(describe_failure(exc, self.namespace, f"get secret {name}")) from None
            except Exception as exc:
                raise ClusterUnavailable(describe_failure(exc, self.namespace, f"get secret {name}")) from None
            entry = None if body is None else (body["metadata"].get("resourceVersion"), _decode(body))
            if self._secrets.get(name) != entry:
                changed = True
                if entry is None:
                    self._secrets.pop(name, None)
                else:
                    self._secrets[name] = entry
        for name in set(self._secrets) - wanted:
            del self._secrets[name]
        return changed

    async def _refresh_secrets(self):
        backoff = BACKOFF_FIRST
        while True:
            await asyncio.sleep(SECRET_INTERVAL)
            try:
                if await self._read_secrets():
                    self._changed.set()
                self._in_sync("secrets")
                backoff = BACKOFF_FIRST
            except ClusterUnavailable as exc:
                await self._out_of_sync("secrets", str(exc), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    # --- the snapshot -------------------------------------------------------------------------------
    async def _rebuild_on_change(self):
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)  # a burst of events makes one rebuild
            self._changed.clear()
            if set(self._referenced_secrets()) - set(self._secrets):
                try:
                    await self._read_secrets()
                except ClusterUnavailable as exc:
                    log.error("configuration: %s", exc)
            self._rebuild()

    def _rebuild(self):
        problems = []
        documents = {}
        for plural, kind in KINDS.items():
            documents[kind] = [doc for doc in (
                D.make_document(name, f"{self.namespace}/{kind}/{name}", obj, kind, problems)
                for name, obj in sorted(self._objects[plural].items())) if doc is not None]
        secrets = [D.Document(name, f"{self.namespace}/Secret/{name}", {"kind": "Secret", "data": entries})
                   for name, (_, entries) in sorted(self._secrets.items())]
        snapshot = build_snapshot(secrets, documents["BackupUser"], documents["BackupCollection"], problems,
                                  stamp=tuple(sorted(self._versions.items())),
                                  user_names=frozenset(self._objects["backupusers"]))
        self.install(snapshot)


def _decode(secret: dict) -> dict:
    """The entries of a Secret as text: the API returns ``data`` base64-encoded (``stringData`` is write-only)."""
    entries = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            entries[key] = base64.b64decode(value or "").decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            entries[key] = ""
    return entries
