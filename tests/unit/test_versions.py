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


# --- minimumRetention (docs/configuration.md#minimum-retention) -------------------------------------------------

def floored(floor_days, **kwargs):
    from dataclasses import replace
    return replace(col(**kwargs), minimum_retention=floor_days * 86400)


def test_without_a_floor_nothing_changes():
    from backup_repository.domain.versions import retention_blocks_next_upload, upload_allowance
    vs = versions(1, 1, 1, age_days=[0.1, 0.05, 0.01])
    assert retention_blocks_next_upload(col(count=3), vs, NOW) is None
    allowance = upload_allowance(col(count=3), vs, NOW)
    assert allowance.allowed == allowance.without_floor and allowance.protected_until is None


def test_rotation_never_deletes_a_protected_version():
    vs = versions(1, 1, 1, 1, 1, age_days=[5, 4, 3, 2, 1])
    assert numbers(rotate_out(col(count=3), vs, NOW)) == [1, 2]
    assert numbers(rotate_out(floored(4.5, count=3), vs, NOW)) == [1]        # v2 (4 days) is protected
    assert rotate_out(floored(6, count=3), vs, NOW) == []


def test_a_full_collection_of_protected_versions_blocks_the_next_upload_until_the_youngest_pushed_out_is_free():
    from backup_repository.domain.versions import retention_blocks_next_upload
    vs = versions(1, 1, 1, age_days=[3, 2, 1])
    # the next upload pushes v1 (3 days old) out: with a floor of 6 days it is protected for 3 more days
    assert retention_blocks_next_upload(floored(6, count=3), vs, NOW) == NOW + timedelta(days=3)
    assert retention_blocks_next_upload(floored(2.5, count=3), vs, NOW) is None       # v1 is past its floor
    assert retention_blocks_next_upload(floored(6, count=4), vs, NOW) is None         # a free slot
    # maxBackupsCount lowered to 1: v1 and v2 are over the count already (kept by the floor); the upload would
    # push v3 out too, so it waits for v3's floor
    assert retention_blocks_next_upload(floored(6, count=1), vs, NOW) == NOW + timedelta(days=5)


def test_daily_backups_seven_kept_and_a_floor_of_six_days_never_block():
    """docs/configuration.md#minimum-retention: with one backup a day and 7 versions, 6d protects every version
    and the 8th upload, a day after the 7th, is never refused."""
    from backup_repository.domain.versions import retention_blocks_next_upload
    vs = versions(*[1] * 7, age_days=[7, 6, 5, 4, 3, 2, 1])
    assert retention_blocks_next_upload(floored(6, count=7), vs, NOW) is None
    assert retention_blocks_next_upload(floored(7.5, count=7), vs, NOW) is not None
    assert rotate_out(floored(6, count=7), [*vs, VersionInfo("new", 8, 1, NOW)], NOW)[0].number == 1


def test_an_aged_older_copy_kept_by_the_floor_takes_room_and_the_refusal_says_when_it_goes():
    from backup_repository.domain.versions import (
        ProtectedVersionsInTheWay, retention_blocks_next_upload, upload_allowance,
    )
    kwargs = dict(count=1, one=10 * M, total=25 * M, strategy="fifo-plus-older", keep=1 * 86400, older=1)
    # v1 (2 days) is past keepLastOlderNotMoreThan: the strategy wants it gone whatever the upload; v2 is the
    # older copy the next upload makes
    vs = versions(10 * M, 10 * M, age_days=[2, 0.5])
    assert retention_blocks_next_upload(floored(3, **kwargs), vs, NOW) is None   # v1 does not block the count
    allowance = upload_allowance(floored(3, **kwargs), vs, NOW)
    assert allowance.without_floor == 15 * M and allowance.allowed == 5 * M       # v1 stays: 25 - 20
    assert allowance.protected_until == NOW + timedelta(days=1)
    refusal = allowance.refusal(6 * M, NOW)
    assert isinstance(refusal, ProtectedVersionsInTheWay) and refusal.status == 429
    assert refusal.message == "collection is full: its oldest version is protected until 2026-11-28T12:00:00Z"
    assert refusal.retry_after == 86400
    assert allowance.refusal(16 * M, NOW) is None                   # over the budget even without the floor: 413


def test_the_refusal_rounds_the_time_up_to_the_whole_second():
    from backup_repository.domain.versions import collection_full
    refusal = collection_full(NOW + timedelta(seconds=2, microseconds=1), NOW)
    assert refusal.message.endswith("until 2026-11-27T12:00:03Z") and refusal.retry_after == 3
    assert collection_full(NOW - timedelta(seconds=1), NOW).retry_after == 1
