"""Rotation strategies and the size budget of docs/api.md#upload."""

from datetime import datetime, timedelta, timezone

import pytest

from backup_repository.domain.collections import Collection
from backup_repository.domain.versions import (
    VersionInfo, allowed_upload_size, rotate_out, rotated_out_by_next_upload,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
M = 1 << 20


def col(count=3, one=10 * M, total=None, strategy="fifo", keep=None, older=0):
    return Collection("c", max_backups_count=count, max_one_version_size=one,
                      max_collection_size=total if total is not None else count * one,
                      strategy_name=strategy, keep_last_older_not_more_than=keep, max_older_copies=older)


def versions(*sizes, age_days=()):
    ages = list(age_days) or [len(sizes) - i for i in range(len(sizes))]
    return [VersionInfo(f"v{i + 1}", i + 1, size, NOW - timedelta(days=ages[i])) for i, size in enumerate(sizes)]


def numbers(found):
    return [v.number for v in found]


def test_fifo_keeps_the_newest_count():
    assert numbers(rotate_out(col(count=3), versions(1, 1, 1, 1, 1), NOW)) == [1, 2]
    assert rotate_out(col(count=3), versions(1, 1, 1), NOW) == []
    assert numbers(rotated_out_by_next_upload(col(count=3), versions(1, 1, 1), NOW)) == [1]
    assert rotated_out_by_next_upload(col(count=3), versions(1, 1), NOW) == []


def test_fifo_plus_older_keeps_young_enough_older_copies():
    c = col(count=2, strategy="fifo-plus-older", keep=5 * 86400, older=2)
    # ages in days, oldest first: v1 9d, v2 4d, v3 3d, v4 2d, v5 1d, v6 0d
    vs = versions(1, 1, 1, 1, 1, 1, age_days=[9, 4, 3, 2, 1, 0])
    # newest two (v6, v5) kept; older copies v4, v3 kept (young, up to 2); v2 over the count; v1 too old
    assert numbers(rotate_out(c, vs, NOW)) == [1, 2]


def test_fifo_plus_older_age_limit_and_no_limit():
    aged = versions(1, 1, 1, 1, age_days=[30, 20, 1, 0])
    limited = col(count=2, strategy="fifo-plus-older", keep=7 * 86400, older=5)
    assert numbers(rotate_out(limited, aged, NOW)) == [1, 2]
    unlimited = col(count=2, strategy="fifo-plus-older", keep=None, older=1)
    assert numbers(rotate_out(unlimited, aged, NOW)) == [1]


def test_budget_without_extra_space_is_the_soft_limit():
    assert allowed_upload_size(col(count=3, one=10 * M), versions(), NOW) == 10 * M
    assert allowed_upload_size(col(count=3, one=10 * M), versions(10 * M, 10 * M), NOW) == 10 * M


def test_extra_space_is_shared_by_large_versions():
    c = col(count=3, one=10 * M, total=40 * M)  # extra = 10M
    assert allowed_upload_size(c, versions(), NOW) == 20 * M
    assert allowed_upload_size(c, versions(14 * M), NOW) == 16 * M      # 4M of the extra used
    assert allowed_upload_size(c, versions(14 * M, 16 * M), NOW) == 10 * M  # all of it used
    assert allowed_upload_size(c, versions(5 * M, 5 * M), NOW) == 20 * M   # small versions use none


def test_versions_about_to_rotate_out_do_not_count():
    c = col(count=2, one=10 * M, total=30 * M)  # extra = 10M
    # with two versions held, the next upload rotates v1 (the 18M one) out: its extra is free again
    assert allowed_upload_size(c, versions(18 * M, 10 * M), NOW) == 20 * M
    # v2 stays: its 8M of extra counts
    assert allowed_upload_size(c, versions(10 * M, 18 * M), NOW) == 12 * M


def test_hard_limit_holds_with_older_copies():
    c = col(count=2, one=10 * M, total=20 * M, strategy="fifo-plus-older", older=2)
    # v1, v2 become older copies and stay; the collection holds 20M already
    assert allowed_upload_size(c, versions(5 * M, 5 * M, 5 * M), NOW) == 5 * M


@pytest.mark.parametrize("sizes", [(), (1,), (10 * M, 10 * M, 10 * M)])
def test_budget_is_never_negative(sizes):
    assert allowed_upload_size(col(count=1, one=M, total=M), versions(*sizes), NOW) >= 0


def test_version_json_has_the_contract_fields_plus_sha256():
    from backup_repository.domain.versions import Version

    v = Version("uuid", "c", 3, "c-3.gpg", 42, "ab" * 32, "sess", "alice", NOW, NOW)
    data = v.to_json()
    assert set(data) == {"id", "collectionId", "versionNumber", "filename", "filesize", "uploadedBySessionId",
                         "user", "CreatedAt", "UpdatedAt", "DeletedAt", "sha256"}
    assert (data["versionNumber"], data["filesize"], data["DeletedAt"]) == (3, 42, None)
    assert data["CreatedAt"] == "2026-11-27T12:00:00Z"
