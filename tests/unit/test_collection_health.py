"""The three collection health checks of docs/api.md#collection-health as plain functions."""

from datetime import datetime, timedelta, timezone

from backup_repository.domain.collections import BackupWindow, Collection
from backup_repository.domain.versions import Version
from backup_repository.health.collection import collection_checks

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def version(number, size, created=NOW):
    return Version(f"id{number}", "c", number, f"c-{number}.gpg", size, "0" * 64, "s", "u", created, created)


def results(collection, versions):
    return {r.name: (r.ok, r.message) for r in collection_checks(collection, versions, NOW)}


def test_all_pass_without_windows():
    collection = Collection("c", max_backups_count=2, max_one_version_size=100, max_collection_size=300)
    assert results(collection, [version(1, 100), version(2, 50)]) == {
        "BackupWindowValidator": (True, "OK"), "VersionsSizeValidator": (True, "OK"),
        "SumOfVersionsValidator": (True, "OK")}


def test_soft_and_hard_limits():
    collection = Collection("c", max_backups_count=2, max_one_version_size=100, max_collection_size=200)
    checked = results(collection, [version(1, 150), version(2, 101)])
    assert checked["VersionsSizeValidator"] == (
        False, "maximum filesize is bigger than collection soft limit per file. Failed file: c-1.gpg (size=150b)")
    assert checked["SumOfVersionsValidator"] == (False, "Summary of all files is 251b, while collection hard limit "
                                                        "is 200b")


def test_window_missed():
    window = BackupWindow("0 1 * * *", 3600, "1h")
    collection = Collection("c", max_backups_count=2, max_one_version_size=100, max_collection_size=300,
                            windows=(window,))
    ok, message = results(collection, [])["BackupWindowValidator"]
    assert not ok and message.startswith("cannot find any backup in the collection")
    stale = version(1, 10, NOW - timedelta(days=3))
    ok, message = results(collection, [stale])["BackupWindowValidator"]
    assert not ok and message.startswith("previous backup was not executed in expected time slots: "
                                         "interval(0 1 * * *) + 1h. Latest backup created at: ")
