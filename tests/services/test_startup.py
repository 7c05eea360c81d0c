"""The start-up in process: whatever step cannot open what it needs, ``AppContext.open`` raises one StartupError with
that step's message (what ``server.py`` logs as ``cannot start: ...``), its failure kept as the cause."""

import asyncio

import pytest

from backup_repository.cli import parse_settings
from backup_repository.context import AppContext
from backup_repository.failures import DatabaseError, StartupError, StorageError
from backup_repository.storage.urls import StorageConfigError
from tests.support import JWT_SECRET, free_port


@pytest.mark.parametrize("broken, cause, message", [
    ("store", StorageError, "cannot reach s3://bucket"),
    ("storage URL", StorageConfigError, "the storage directory .* does not exist"),
    ("database", DatabaseError, "cannot open the SQLite database"),
], ids=["store", "storage URL", "database"])
def test_a_step_that_cannot_open_is_one_startup_error(tmp_path, monkeypatch, broken, cause, message):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    (tmp_path / "config").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "a-file").write_text("")
    db_path = tmp_path / "a-file" / "m.db" if broken == "database" else tmp_path / "m.db"
    storage_url = {
        "store": f"s3://bucket?endpoint=127.0.0.1:{free_port()}&disableSSL=true&region=eu-central-1",
        "storage URL": f"file://{tmp_path / 'missing'}",
    }.get(broken, f"file://{tmp_path / 'store'}")
    _, settings = parse_settings([f"--jwt-secret-key={JWT_SECRET}", f"--config-local-path={tmp_path / 'config'}",
                                  f"--db-path={db_path}", f"--storage-url={storage_url}"], environ={})

    with pytest.raises(StartupError, match=message) as raised:
        asyncio.run(AppContext.open(settings))
    assert isinstance(raised.value.__cause__, cause)
