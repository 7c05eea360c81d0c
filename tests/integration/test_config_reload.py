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
    assert wait_until(lambda: login_status(server, "admin", "admin") == 401, timeout=10), server.log()[-3000:]
    assert login_status(server, "uploader", "uploader") == 200
    assert wait_until(lambda: "admin.yaml" in server.log() and "not valid YAML" in server.log(), timeout=5)


def test_the_kernel_tells_of_edits_so_they_apply_at_once(make_backend, config, start_server):
    """On Linux, inotify: with an interval of an hour, an edit in place, a new file and a removal still apply
    within about a second (docs/configuration.md#reloading)."""
    server = start_server(make_backend("sqlite", "local"), config, "--config-reload-interval=1h")
    path = config.user("quick", encode_password("pw1"))
    assert wait_until(lambda: login_status(server, "quick", "pw1") == 200, timeout=2, interval=0.1)
    with open(path, "r+") as handle:  # in place: same inode, no rename
        text = handle.read()
        handle.seek(0)
        handle.write(text.replace("quick@example.org", "quick@example.com"))
        handle.truncate()
    config.user("other", encode_password("pw2"))
    assert wait_until(lambda: login_status(server, "other", "pw2") == 200, timeout=2, interval=0.1)
    config.remove(USERS, "quick")
    assert wait_until(lambda: login_status(server, "quick", "pw1") == 401, timeout=2, interval=0.1)


def test_a_directory_switched_to_another_checkout_applies_within_the_interval(make_backend, tmp_path, start_server):
    """The namespace directory as a symbolic link switched to another checkout (as git-sync does): the kernel
    says nothing about the old directory, the look at the directories every interval sees it."""
    import shutil

    from tests.support import EXAMPLES, NAMESPACE, ConfigDir

    first, second = tmp_path / "rev-1", tmp_path / "rev-2"
    shutil.copytree(EXAMPLES / NAMESPACE, first)
    shutil.copytree(EXAMPLES / NAMESPACE, second)
    config = ConfigDir(tmp_path / "config", copy_examples=False)
    shutil.rmtree(config.ns)
    config.ns.symlink_to(first)
    server = start_server(make_backend("sqlite", "local"), config, "--config-reload-interval=1s")
    assert login_status(server, "admin", "admin") == 200
    (second / USERS / "admin.yaml").unlink()
    link = tmp_path / "config" / "next"
    link.symlink_to(second)
    link.replace(config.ns)  # atomic switch
    assert wait_until(lambda: login_status(server, "admin", "admin") == 401, timeout=4, interval=0.1)
    assert login_status(server, "uploader", "uploader") == 200
