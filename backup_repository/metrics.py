"""Prometheus metrics of one server (docs/monitoring.md), kept in a registry of its own.

prometheus_client is the reference implementation of the text format, its escaping and its histogram buckets, and
it brings the standard process metrics (RSS, CPU, open file descriptors): code we should not write again.

Labels take values only from the server's own routes and fixed lists, never from a request's path, user or
collection name, so the number of series does not grow with what clients send.
"""

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backup_repository import __version__

#: seconds; from a health probe to a long download
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.build_info = Gauge("backup_repository_build_info", "The server's version and Python's, as labels; 1",
                                ["version", "python"], registry=self.registry)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.requests = Counter("backup_repository_http_requests", "HTTP requests answered, by endpoint and status "
                                "class", ["endpoint", "code"], registry=self.registry)
        self.request_duration = Histogram("backup_repository_http_request_duration_seconds",
                                          "Time from a request's first byte to its answer, by endpoint",
                                          ["endpoint"], buckets=DURATION_BUCKETS, registry=self.registry)

    def request_done(self, endpoint: str, status: int, seconds: float):
        code = f"{status // 100}xx"
        self.requests.labels(endpoint, code if code in STATUS_CLASSES else "5xx").inc()
        self.request_duration.labels(endpoint).observe(seconds)

    def render(self) -> tuple:
        """(body, content type) of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
