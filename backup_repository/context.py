"""AppContext: everything app-wide — settings, configuration, database, storage and services.

``open()`` brings the dependencies up in order and fails with a message saying what to check;
``close()`` releases them in reverse order.
"""

import asyncio
import logging

from backup_repository import integrity
from backup_repository.config.provider import FilesystemProvider, log_problems
from backup_repository.db import open_database
from backup_repository.security.auth import AuthService
from backup_repository.security.passwords import PasswordVerifier
from backup_repository.security.ratelimit import RateLimits
from backup_repository.security.tokens import RECOMMENDED_KEY_BYTES, TokenService
from backup_repository.services.collections import CollectionService
from backup_repository.services.janitor import Janitor
from backup_repository.services.uploads import UploadService
from backup_repository.storage.blobstore import BlobStore

log = logging.getLogger(__name__)


class AppContext:
    def __init__(self, settings):
        self.settings = settings
        self.config = FilesystemProvider(
            settings.config_local_path, settings.namespace, reload_interval=settings.config_reload_interval
        )
        self.db = open_database(settings)
        self.storage = None
        self.verifier = PasswordVerifier(settings.password_check_concurrency, settings.password_check_queue)
        self.rate_limits = RateLimits(settings)
        self.tokens = TokenService(settings.jwt_secret_key, settings.jwt_expiry)
        self.auth = AuthService(self.config, self.db, self.tokens, self.verifier)
        self.config.on_change(self.auth.configuration_changed)
        self.collections = CollectionService(self.config, self.db)
        self.uploads = None  # needs the storage: built in open()
        self.requests_in_flight = set()  # handlers of requests being served (a graceful stop waits for them)
        self.stopping = False
        self._background = []

    async def open(self):
        if len(self.settings.jwt_secret_key.encode()) < RECOMMENDED_KEY_BYTES:
            log.warning("the JWT secret key is shorter than %d bytes; a longer random key is safer "
                        "(for example: openssl rand -base64 32)", RECOMMENDED_KEY_BYTES)
        snapshot = self.config.load()
        log.info("configuration: %s (%d users, %d collections)",
                 self.config.root, len(snapshot.users), len(snapshot.collections))
        log_problems(snapshot)

        log.info("metadata database: %s", self.db.describe())
        await self.db.open()

        self.storage = BlobStore.from_url(
            self.settings.storage_url, self.settings.use_google_cloud,
            create_local=self.settings.storage_url_is_default,
        )
        log.info("storage: %s", self.storage.describe())
        await self.storage.open()
        self.uploads = UploadService(self.config, self.db, self.storage, self.settings.max_uploads_per_user)
        self.collections.storage = self.storage
        self.config.start()
        self._start_background_jobs()

    def _start_background_jobs(self):
        settings = self.settings
        janitor = Janitor(self.db, self.storage, max(settings.http_upload_timeout, settings.storage_io_timeout))
        self._background.append(asyncio.ensure_future(janitor.run_forever(settings.janitor_interval)))
        if settings.verify_interval > 0:
            self._background.append(asyncio.ensure_future(
                integrity.run_forever(self.db, self.storage, settings.verify_interval)))

    async def abort_uploads(self):
        """Uploads still running when the server stops leave nothing behind: abort them before closing."""
        if self.uploads is not None and self.uploads.active:
            log.info("abandoning %d unfinished upload(s)", len(self.uploads.active))
            await asyncio.gather(*(upload.abort() for upload in list(self.uploads.active)))

    async def close(self):
        for task in self._background:
            task.cancel()
        await self.abort_uploads()
        await self.config.stop()
        if self.storage is not None:
            await self.storage.close()
        await self.db.close()
        self.verifier.close()
