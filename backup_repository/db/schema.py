"""Versioned schema migrations, applied in order at start-up.

The SQL is written once for both backends: SQLite accepts the PostgreSQL type names and the SQLite backend
registers converters for ``TIMESTAMPTZ`` and ``BOOLEAN`` so that rows come back as the same Python values.
Never edit a released migration: append a new one.
"""

MIGRATIONS = [
    (
        1,
        "granted accesses (sessions)",
        [
            """CREATE TABLE granted_accesses (
                id TEXT PRIMARY KEY,
                expires_at TIMESTAMPTZ NOT NULL,
                deactivated BOOLEAN NOT NULL DEFAULT FALSE,
                description TEXT NOT NULL DEFAULT '',
                requester_ip TEXT NOT NULL DEFAULT '',
                user_name TEXT NOT NULL,
                access_key_name TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                deleted_at TIMESTAMPTZ NULL
            )""",
            "CREATE INDEX granted_accesses_user_created ON granted_accesses (user_name, created_at)",
        ],
    ),
    (
        2,
        "versions, version counters and upload locks",
        [
            """CREATE TABLE versions (
                id TEXT PRIMARY KEY,
                collection_id TEXT NOT NULL,
                version_number INTEGER NOT NULL,
                filename TEXT NOT NULL,
                filesize BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                uploaded_by_session_id TEXT NOT NULL DEFAULT '',
                user_name TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                deleted_at TIMESTAMPTZ NULL,
                UNIQUE (collection_id, version_number)
            )""",
            # the highest number ever given per collection: numbers are never reused, even after rotation
            "CREATE TABLE version_counters (collection_id TEXT PRIMARY KEY, last_number INTEGER NOT NULL)",
            # one upload per collection at a time across every server: a lease that its holder keeps renewing
            """CREATE TABLE upload_locks (
                collection_id TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )""",
        ],
    ),
    (
        3,
        "pending uploads (crash recovery) and integrity checks",
        [
            # an object being written: removed when its version is registered or the upload is abandoned; a row
            # older than the upload timeout is a crash's leftover that the janitor cleans up
            """CREATE TABLE pending_uploads (
                object_name TEXT PRIMARY KEY,
                collection_id TEXT NOT NULL,
                started_at TIMESTAMPTZ NOT NULL
            )""",
            # the last verification of each stored version (backup-repository --verify, or the periodic job)
            """CREATE TABLE integrity_checks (
                version_id TEXT PRIMARY KEY,
                collection_id TEXT NOT NULL,
                checked_at TIMESTAMPTZ NOT NULL,
                ok BOOLEAN NOT NULL,
                message TEXT NOT NULL DEFAULT ''
            )""",
        ],
    ),
    (
        4,
        "sessions bound to the credential that opened them",
        [
            # a fingerprint of the password or access-key hash the session was opened with (never the hash itself):
            # when the credential changes, the session ends (docs/api.md#sessions-and-credentials)
            "ALTER TABLE granted_accesses ADD COLUMN credential TEXT NOT NULL DEFAULT ''",
        ],
    ),
    (
        5,
        "leases of pending uploads and recorded deletions",
        [
            # the upload that owns the row (its holder token) and until when its lease runs: the upload renews it,
            # commits only while it still owns the row, and the janitor takes a row over only once the lease has
            # run out (docs/scaling.md#what-is-guaranteed); rows of earlier servers have no holder
            "ALTER TABLE pending_uploads ADD COLUMN holder TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE pending_uploads ADD COLUMN expires_at TIMESTAMPTZ NULL",
            # an object whose version is gone but which may still be in the store: written in the transaction
            # that deletes the version, removed once the store confirms the object is gone; the janitor retries
            """CREATE TABLE pending_deletions (
                object_name TEXT PRIMARY KEY,
                collection_id TEXT NOT NULL,
                version_number INTEGER NOT NULL,
                recorded_at TIMESTAMPTZ NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT NOT NULL DEFAULT ''
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]
