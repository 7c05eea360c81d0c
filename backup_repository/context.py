"""The one place that wires the application: settings -> configuration, database, store -> services.

``AppContext.open(settings)`` opens the configuration, the database and the store, then builds every service with
everything it needs; no field is ever None and nothing is patched in later. ``open_stores`` and
``make_configuration`` are the same steps for the one-shot commands (``--verify``, ``--validate-config``).
``start()`` starts the background work (configuration watch, janitor, verification); ``close()`` undoes it all.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Optional

from backup_repository.config.filesystem import FilesystemProvider
from backup_repository.config.provider import ConfigurationUnavailable, log_problems
from backup_repository.db import open_database
from backup_repository.failures import DatabaseError, StartupError, StorageError
from backup_repository.health.checks import readiness_checks
from backup_repository.metrics import Metrics
from backup_repository.process import release_free_memory
from backup_repository.security.passwords import PasswordVerifier
from backup_repository.security.ratelimit import CLASSES as RATE_CLASSES, RateLimits
from backup_repository.security.tokens import RECOMMENDED_KEY_BYTES, TokenService
from backup_repository.services import integrity, ports
from backup_repository.services.auth import AuthService
from backup_repository.services.collections import CollectionService
from backup_repository.services.janitor import Janitor
from backup_repository.services.monitoring import CollectionMonitor
from backup_repository.services.status import StatusPublisher
from backup_repository.services.uploads import UploadLimits, UploadService
from backup_repository.settings import Settings
from backup_repository.storage.blobstore import BlobStore
from backup_repository.storage.urls import StorageConfigError

log = logging.getLogger(__name__)

#: What opening the configuration, the database and the store raises when one of them cannot be used, each with a
#: message saying what to check: at start-up, any of them is a StartupError.
OPENING_FAILURES = (ConfigurationUnavailable, DatabaseError, StorageError, StorageConfigError)


def make_configuration(settings: Settings) -> ports.ConfigurationProvider:
    """The configuration provider of --provider, not yet opened."""
    if settings.provider == "kubernetes":
        from backup_repository.config.kubernetes import KubernetesProvider

        return KubernetesProvider(settings.namespace, settings.kubeconfig, settings.kube_start_timeout,
                                  settings.kube_stale_after, settings.kube_request_timeout,
                                  settings.kube_watch_timeout)
    return FilesystemProvider(settings.config_local_path, settings.namespace,
                              reload_interval=settings.config_reload_interval)


@contextlib.asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[tuple[ports.Repository, ports.BlobStore]]:
    """``async with open_stores(settings) as (db, storage)``: the metadata database (migrated) and the object store,
    opened in that order and closed in reverse; raises DatabaseError / StorageError / StorageConfigError with a
    message saying what to check."""
    db: ports.Repository = open_database(settings)
    log.info("metadata database: %s", db.describe())
    try:
        await db.open()
        storage: ports.BlobStore = BlobStore.from_url(settings.storage_url, settings.use_google_cloud,
                                                      create_local=settings.storage_url_is_default)
        log.info("storage: %s", storage.describe())
        try:
            await storage.open()
            yield db, storage
        finally:
            await storage.close()
    finally:
        await db.close()


class AppContext:
    """Everything app-wide: settings, configuration, database, store and the services built on them."""

    def __init__(self, settings: Settings, config: ports.ConfigurationProvider, db: ports.Repository,
                 storage: ports.BlobStore, resources: Optional[contextlib.AsyncExitStack] = None):
        self.settings = settings
        self.config = config
        self.db = db
        self.storage = storage
        #: the provider itself, when it shows each collection's status to its users (Kubernetes)
        self.status_writer: Optional[ports.StatusWriter] = config if isinstance(config, ports.StatusWriter) else None
        self.metrics = metrics = Metrics()
        self.verifier = PasswordVerifier(settings.password_check_concurrency, settings.password_check_queue)
        self.rate_limits = RateLimits(settings)
        self.tokens = TokenService(settings.jwt_secret_key, settings.jwt_expiry)
        self.auth = AuthService(config, db, self.tokens, self.verifier, events=metrics)
        self.collections = CollectionService(config, db, storage)
        limits = UploadLimits(total=min(settings.http_upload_timeout, settings.storage_io_timeout),
                              idle=settings.http_upload_idle_timeout, lease=settings.upload_lease,
                              min_rate=settings.http_upload_min_rate, rate_window=settings.http_upload_rate_window)
        self.uploads = UploadService(config, db, storage, settings.max_uploads_per_user, events=metrics,
                                     limits=limits)
        self.readiness = readiness_checks(db, storage, config, settings.storage_health_timeout)
        config.on_change(self.auth.configuration_changed)
        metrics.watch(self.uploads, self.verifier, config, RATE_CLASSES)
        self.requests_in_flight: set = set()  # handlers of requests being served (a graceful stop waits for them)
        self.stopping = False
        self._background: list[asyncio.Future] = []
        self._resources = resources or contextlib.AsyncExitStack()  # closes the database and the store

    @classmethod
    async def open(cls, settings: Settings) -> "AppContext":
        """Open the configuration, the database and the store, and build everything on them; raise StartupError,
        with the message of the step that failed, when one of them cannot be used."""
        try:
            return await cls._open(settings)
        except OPENING_FAILURES as exc:
            raise StartupError(str(exc)) from exc

    @classmethod
    async def _open(cls, settings: Settings) -> "AppContext":
        if len(settings.jwt_secret_key.encode()) < RECOMMENDED_KEY_BYTES:
            log.warning("the JWT secret key is shorter than %d bytes; a longer random key is safer "
                        "(for example: openssl rand -base64 32)", RECOMMENDED_KEY_BYTES)
        config = make_configuration(settings)
        await config.open()
        snapshot = config.snapshot
        log.info("configuration: %s (%d users, %d collections)",
                 config.root, len(snapshot.users), len(snapshot.collections))
        log_problems(snapshot)
        async with contextlib.AsyncExitStack() as resources:
            db, storage = await resources.enter_async_context(open_stores(settings))
            ctx = cls(settings, config, db, storage, resources.pop_all())
        release_free_memory()  # what reading the configuration left behind
        return ctx

    def start(self) -> None:
        """The background work: the configuration watch, the janitor and, when asked for, periodic verification."""
        settings = self.settings
        self.config.start()
        janitor = Janitor(self.db, self.storage, max(settings.http_upload_timeout, settings.storage_io_timeout),
                          events=self.metrics)
        self._background.append(asyncio.ensure_future(janitor.run_forever(settings.janitor_interval)))
        if self.status_writer is not None:
            publisher = StatusPublisher(self.collections, self.status_writer)
            self._background.append(asyncio.ensure_future(publisher.run_forever()))
        if settings.metrics_token or settings.metrics_listen:  # the collection metrics cost a refresh: only if served
            monitor = CollectionMonitor(self.config, self.db, self.metrics, settings.metrics_refresh_interval)
            self._background.append(asyncio.ensure_future(monitor.run_forever()))
        if settings.verify_interval > 0:
            self._background.append(asyncio.ensure_future(
                integrity.run_forever(self.db, self.storage, settings.verify_interval)))

    async def abort_uploads(self) -> None:
        """Uploads still running when the server stops leave nothing behind: abort them before closing."""
        if self.uploads.active:
            log.info("abandoning %d unfinished upload(s)", len(self.uploads.active))
            await asyncio.gather(*(upload.abort() for upload in list(self.uploads.active)))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await self.abort_uploads()
        await self.config.stop()
        await self._resources.aclose()
        self.verifier.close()
