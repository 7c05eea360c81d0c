"""What the server reports about its own work, for monitoring (docs/monitoring.md): services call these methods
and know nothing of how they are counted. ``Events`` does nothing; ``backup_repository.metrics.Metrics`` counts.

Every argument that could become a label is one of the fixed lists below or a collection id from the configuration,
never something a client chose.
"""

from typing import Optional

#: How an upload ended (``backup_repository_uploads_total{outcome}``).
UPLOAD_OUTCOMES = (
    "stored", "quota", "protected", "not_gpg", "window_closed", "locked", "too_many_uploads", "forbidden", "not_found",
    "unauthenticated", "bad_request", "client_gone", "timeout", "stopping", "storage_error", "database_error",
    "error",
)
#: How a login ended (``backup_repository_logins_total{result}``).
LOGIN_RESULTS = ("ok", "bad_credentials", "rate_limited", "queue_full", "ip_not_allowed", "deactivated")


class Events:
    """The no-op observer (one-shot commands, service tests)."""

    def login(self, result: str):
        """One login attempt ended with ``result`` (one of LOGIN_RESULTS)."""

    def upload_finished(self, outcome: str, collection_id: Optional[str] = None, seconds: float = 0.0,
                        size: int = 0):
        """An upload ended with ``outcome`` (one of UPLOAD_OUTCOMES); ``collection_id`` only for a configured
        collection; ``seconds`` and ``size`` for a stored one."""

    def rotated(self, count: int):
        """Rotation deleted ``count`` versions."""

    def janitor_removed(self, count: int):
        """The janitor removed ``count`` leftovers of interrupted uploads or recorded deletions."""

    def deletion_refused(self):
        """The store refused (or failed) to delete the object of a deleted version; it stays recorded."""

    def rate_limited(self, rate_class: str):
        """A request was refused by the rate limit of ``rate_class`` (security/ratelimit.CLASSES)."""


NO_EVENTS = Events()
