"""Prometheus metrics of one server (docs/monitoring.md), kept in a registry of its own.

prometheus_client is the reference implementation of the text format, its escaping and its histogram buckets, and
it brings the standard process metrics (RSS, CPU, open file descriptors): code we should not write again.

Labels take values only from the server's own routes, fixed lists (domain/events.py) and the configured collection
ids, never from a request's path, user or collection name, so the number of series does not grow with what clients
send.

Two kinds of metrics: the server's own (counters of this instance: requests, uploads, logins...), kept live; and
the collections' (the same on every instance: from the shared database and configuration), computed in the
background by services/monitoring.py and rendered once per refresh, so that a scrape only joins two texts.
"""

import platform
import threading
from typing import Optional

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics, generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backup_repository import __version__
from backup_repository.domain.events import LOGIN_RESULTS, UPLOAD_OUTCOMES, Events

#: seconds; from a health probe to a long download
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
#: seconds an upload took, from its headers to its version being registered
UPLOAD_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600)
#: bytes: 1 KiB to 1 TiB by factors of 4
SIZE_BUCKETS = tuple(float(1 << shift) for shift in range(10, 42, 2))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: the collection metrics: (name, help, attribute of services.monitoring.CollectionFigures)
COLLECTION_GAUGES = (
    ("backup_repository_collection_versions", "Versions stored in the collection", "versions"),
    ("backup_repository_collection_used_bytes", "Bytes the collection's versions take", "used_bytes"),
    ("backup_repository_collection_max_size_bytes", "maxCollectionSize of the collection", "max_size"),
    ("backup_repository_collection_max_versions", "maxBackupsCount of the collection", "max_versions"),
    ("backup_repository_collection_latest_version_timestamp_seconds",
     "When the collection's newest version was stored, unix seconds (absent without versions)", "latest"),
    ("backup_repository_collection_expected_interval_seconds",
     "The longest time between two backups that both arrive on time, from the backup windows (absent without "
     "windows)", "expected_interval"),
    ("backup_repository_collection_window_ok",
     "1 when the newest version arrived in the latest slot of a backup window (BackupWindowValidator)", "window_ok"),
    ("backup_repository_collection_size_ok",
     "1 when no version is above maxOneVersionSize and all together are within maxCollectionSize", "size_ok"),
    ("backup_repository_collection_integrity_ok",
     "1 when the last verification found no corrupt version", "integrity_ok"),
    ("backup_repository_collection_storage_ok",
     "1 when the last verification found every version's object in the storage", "storage_ok"),
    ("backup_repository_collection_minimum_retention_seconds",
     "minimumRetention of the collection: no version is deleted younger than this (absent without it)",
     "minimum_retention"),
    ("backup_repository_collection_retention_ok",
     "0 while the collection is full of versions its minimumRetention protects, so that the next upload will be "
     "refused (absent without minimumRetention)", "retention_ok"),
    ("backup_repository_collection_undeleted_objects",
     "Objects of the collection's deleted versions that the store refused (or failed) to delete; recorded, the "
     "janitor retries them", "undeleted"),
    ("backup_repository_collection_last_verification_timestamp_seconds",
     "When a version of the collection was last verified (--verify, --verify-interval), unix seconds", "verified"),
)


#: No ``*_created`` series: they double the counters' series, and Prometheus' text format has no use for them.
disable_created_metrics()


class Metrics(Events):
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        self.build_info = Gauge("backup_repository_build_info", "The server's version and Python's, as labels; 1",
                                ["version", "python"], registry=registry)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.requests = Counter("backup_repository_http_requests", "HTTP requests answered, by endpoint and status "
                                "class", ["endpoint", "code"], registry=registry)
        self.request_duration = Histogram("backup_repository_http_request_duration_seconds",
                                          "Time from a request's first byte to its answer, by endpoint",
                                          ["endpoint"], buckets=DURATION_BUCKETS, registry=registry)
        self.received = Counter("backup_repository_http_received_bytes",
                                "Request body bytes received (uploads, logins)", registry=registry)
        self.sent = Counter("backup_repository_http_sent_bytes",
                            "Response body bytes sent (downloads, JSON answers)", registry=registry)
        self.uploads = Counter("backup_repository_uploads", "Uploads ended, by outcome", ["outcome"],
                               registry=registry)
        for outcome in UPLOAD_OUTCOMES:
            self.uploads.labels(outcome)
        self.collection_failures = Counter("backup_repository_collection_upload_failures",
                                           "Uploads to a configured collection that did not store a version",
                                           ["collection"], registry=registry)
        self.uploads_in_progress = Gauge("backup_repository_uploads_in_progress", "Uploads being received",
                                         registry=registry)
        self.upload_duration = Histogram("backup_repository_upload_duration_seconds",
                                         "Time a stored upload took, from its headers to its version registered",
                                         buckets=UPLOAD_DURATION_BUCKETS, registry=registry)
        self.upload_size = Histogram("backup_repository_upload_size_bytes", "Size of each stored version",
                                     buckets=SIZE_BUCKETS, registry=registry)
        self.rotations = Counter("backup_repository_rotation_deleted_versions",
                                 "Versions deleted by rotation (fifo, fifo-plus-older)", registry=registry)
        self.logins = Counter("backup_repository_logins", "Login attempts, by result", ["result"], registry=registry)
        for result in LOGIN_RESULTS:
            self.logins.labels(result)
        self.password_checks = Gauge("backup_repository_password_checks",
                                     "Password verifications running or waiting (--password-check-concurrency, "
                                     "--password-check-queue)", ["state"], registry=registry)
        self.rate_limited_requests = Counter("backup_repository_rate_limited_requests",
                                             "Requests refused by a rate limit (429), by class", ["class"],
                                             registry=registry)
        self.janitor = Counter("backup_repository_janitor_removed_objects",
                               "Leftovers of interrupted uploads and recorded deletions removed by the janitor",
                               registry=registry)
        self.deletions_refused = Counter("backup_repository_deletions_refused",
                                         "Deletions of a deleted version's object that the store refused or "
                                         "failed (each attempt; the deletion stays recorded)", registry=registry)
        self.configuration_problems = Gauge("backup_repository_configuration_problems",
                                            "Problems in the configuration last read (each object with one is "
                                            "not loaded)", registry=registry)
        self.configuration_loaded = Gauge("backup_repository_configuration_loaded_timestamp_seconds",
                                          "When the configuration was last read, unix seconds", registry=registry)
        self.configuration_usable = Gauge("backup_repository_configuration_usable",
                                          "1 while the configuration source is usable (0: the Kubernetes API has "
                                          "been away or refusing longer than --kube-stale-after)",
                                          registry=registry)
        self.configured = Gauge("backup_repository_configured_objects", "Users and collections loaded",
                                ["kind"], registry=registry)
        self._counted_collections = set()  # the collections with a series in collection_failures
        self._series_lock = threading.Lock()  # that set: changed on the event loop and by the refresh thread
        self._collections_text = b""
        self._collections_lock = threading.Lock()

    # --- wiring: values read at scrape time --------------------------------------------------------------
    def watch(self, uploads, verifier, config, rate_classes):
        """Gauges that read the services' state when scraped, and the enum series that exist from the start."""
        self.uploads_in_progress.set_function(lambda: len(uploads.active))
        self.password_checks.labels("running").set_function(lambda: min(verifier.in_flight, verifier.concurrency))
        self.password_checks.labels("waiting").set_function(
            lambda: max(0, verifier.in_flight - verifier.concurrency))
        self.configuration_problems.set_function(lambda: len(config.snapshot.problems))
        self.configuration_loaded.set_function(lambda: config.loaded_at)
        self.configured.labels("user").set_function(lambda: len(config.snapshot.users))
        self.configured.labels("collection").set_function(lambda: len(config.snapshot.collections))

        def usable():
            try:
                config.check()
            except OSError:
                return 0
            return 1

        self.configuration_usable.set_function(usable)
        for rate_class in rate_classes:
            self.rate_limited_requests.labels(rate_class)

    # --- Events ------------------------------------------------------------------------------------------
    def request_done(self, endpoint: str, status: int, seconds: float):
        code = f"{status // 100}xx"
        self.requests.labels(endpoint, code if code in STATUS_CLASSES else "5xx").inc()
        self.request_duration.labels(endpoint).observe(seconds)

    def login(self, result: str):
        self.logins.labels(result).inc()

    def upload_finished(self, outcome: str, collection_id: Optional[str] = None, seconds: float = 0.0,
                        size: int = 0):
        self.uploads.labels(outcome).inc()
        if outcome == "stored":
            self.upload_duration.observe(seconds)
            self.upload_size.observe(size)
        elif collection_id is not None:
            with self._series_lock:
                self.collection_failures.labels(collection_id).inc()
                self._counted_collections.add(collection_id)

    def rotated(self, count: int):
        self.rotations.inc(count)

    def janitor_removed(self, count: int):
        self.janitor.inc(count)

    def deletion_refused(self):
        self.deletions_refused.inc()

    def rate_limited(self, rate_class: str):
        self.rate_limited_requests.labels(rate_class).inc()

    def bytes_received(self, count: int):
        self.received.inc(count)

    def bytes_sent(self, count: int):
        self.sent.inc(count)

    def sync_collections(self, configured):
        """A failure series for each configured collection, from 0 (so that the first failure is an increase);
        those of collections no longer configured are dropped (a removed tenant's series go with it)."""
        with self._series_lock:
            self._sync_collections(configured)

    def _sync_collections(self, configured):
        for collection_id in [name for name in self._counted_collections if name not in configured]:
            self.collection_failures.remove(collection_id)
            self._counted_collections.discard(collection_id)
        for collection_id in configured:
            if collection_id not in self._counted_collections:
                self.collection_failures.labels(collection_id)
                self._counted_collections.add(collection_id)

    # --- collections -------------------------------------------------------------------------------------
    def show_collections(self, figures, refreshed_at: float, seconds: float):
        """Render the collection metrics of ``figures`` (services.monitoring.CollectionFigures) once; every scrape
        until the next refresh serves this text. Blocking: run it off the event loop."""
        text = generate_latest(_Families(figures, refreshed_at, seconds))
        with self._collections_lock:
            self._collections_text = text

    def render(self) -> tuple:
        """(body, content type) of a scrape."""
        with self._collections_lock:
            collections = self._collections_text
        return generate_latest(self.registry) + collections, CONTENT_TYPE_LATEST


class _Families:
    """A one-off registry-like object for generate_latest: the collection gauges of one refresh."""

    def __init__(self, figures, refreshed_at: float, seconds: float):
        self._figures = figures
        self._refreshed_at = refreshed_at
        self._seconds = seconds

    def collect(self):
        refreshed = GaugeMetricFamily("backup_repository_collections_refreshed_timestamp_seconds",
                                      "When the collection metrics were last computed, unix seconds")
        refreshed.add_metric([], self._refreshed_at)
        yield refreshed
        duration = GaugeMetricFamily("backup_repository_collections_refresh_duration_seconds",
                                     "How long the previous computation of the collection metrics took, its "
                                     "queries and rendering included")
        duration.add_metric([], self._seconds)
        yield duration
        for name, documentation, attribute in COLLECTION_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["collection"])
            for figure in self._figures:
                value = getattr(figure, attribute)
                if value is not None:
                    family.add_metric([figure.collection_id], float(value))
            yield family
