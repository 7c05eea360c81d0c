"""The metadata database: one repository (``Repository``, a part per aggregate: ``db.sessions``, ``db.versions``, ...),
two backends with identical behaviour.

``open_database(settings)`` picks SQLite (the embedded default) when no database user is configured and
PostgreSQL otherwise.
"""

from backup_repository.db.repository import Repository


def open_database(settings) -> Repository:
    if settings.db_user:
        from backup_repository.db.postgres import PostgresDatabase

        return PostgresDatabase(
            host=settings.db_hostname, port=settings.db_port, user=settings.db_user,
            password=settings.db_password, dbname=settings.db_name or settings.db_user,
        )
    from backup_repository.db.sqlite import SqliteDatabase

    return SqliteDatabase(settings.db_path)
