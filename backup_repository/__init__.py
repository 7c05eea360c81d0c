"""backup-repository: a zero-knowledge, multi-tenant storage server for GPG-encrypted backups.

A drop-in replacement for the Go server riotkit-org/backup-repository v4 (same flags, same
configuration documents, same HTTP API, same password hashes).
"""

__version__ = "0.1.0"
