"""Configuration as code applies without a restart (GitOps): additions, edits, removals, broken documents."""

import time

from backup_repository.security.passwords import encode_password
from tests.support import USERS, wait_until

LOGIN = "/api/stable/auth/login"


def login_status(server, username, password):
    return server.request("POST", LOGIN, json={"username": username, "password": password}).status_code


def test_changes_apply_within_seconds_without_restart(make_backend, config, start_server):
    # the default interval (5s) is what users get: changes must apply within 10 seconds
    server = start_server(make_backend("sqlite", "local"), config, "--config-reload-interval=5s")
    assert login_status(server, "newcomer", "pw1") == 401

    started = time.monotonic()
    config.user("newcomer", encode_password("pw1"))
    assert wait_until(lambda: login_status(server, "newcomer", "pw1") == 200, timeout=10)
    added_after = time.monotonic() - started

    config.user("newcomer", encode_password("pw2"))
    assert wait_until(lambda: login_status(server, "newcomer", "pw2") == 200, timeout=10)
    assert login_status(server, "newcomer", "pw1") == 401

    config.remove(USERS, "newcomer")
    assert wait_until(lambda: login_status(server, "newcomer", "pw2") == 401, timeout=10)
    assert added_after < 10


def test_a_broken_document_breaks_only_its_object(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config)
    config.write(USERS, "admin", "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nspec: [oops\n")
    assert wait_until(lambda: login_status(server, "admin", "admin") == 401, timeout=10)
    assert login_status(server, "uploader", "uploader") == 200
    assert wait_until(lambda: "admin.yaml" in server.log() and "not valid YAML" in server.log(), timeout=5)
