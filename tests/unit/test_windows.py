"""Backup windows: open or closed, and whether the latest backup came in its slot."""

from datetime import datetime, timezone

import pytest

from backup_repository.domain.collections import BackupWindow
from backup_repository.domain.windows import check_latest_backup, is_open


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NIGHTLY = BackupWindow("30 0 * * *", 7200, "2h")  # 00:30-02:30 every day
AT = lambda h, m=0, day=27: datetime(2026, 11, day, h, m, tzinfo=timezone.utc)  # noqa: E731


@pytest.mark.parametrize("moment, expected", [
    (AT(0, 29), False), (AT(0, 30), True), (AT(1, 45), True), (AT(2, 30), True), (AT(2, 31), False),
    (AT(23, 0), False),
])
def test_window_open_or_closed(moment, expected):
    assert is_open([NIGHTLY], moment) is expected


def test_no_windows_means_always_open_and_healthy():
    assert is_open([], AT(12))
    assert check_latest_backup([], None, AT(12)) is None


def test_any_window_opens():
    noon = BackupWindow("0 12 * * *", 600, "10m")
    assert is_open([NIGHTLY, noon], AT(12, 5))
    assert not is_open([NIGHTLY, noon], AT(12, 11))


def test_latest_backup_on_time_late_or_missing():
    assert check_latest_backup([NIGHTLY], AT(1), AT(12)) is None
    late = check_latest_backup([NIGHTLY], AT(1, day=26), AT(12))
    assert late == ("previous backup was not executed in expected time slots: interval(30 0 * * *) + 2h. "
                    "Latest backup created at: 2026-11-26T01:00:00+00:00")
    assert check_latest_backup([NIGHTLY], None, AT(12)).startswith("cannot find any backup in the collection: ")
    # during the slot the backup may still be running: healthy
    assert check_latest_backup([NIGHTLY], AT(1, day=26), AT(1)) is None


def test_duration_longer_than_the_interval():
    hourly_long = BackupWindow("0 * * * *", 3 * 3600, "3h")
    assert is_open([hourly_long], AT(5, 59))


@pytest.mark.parametrize("now, expected", [
    (AT(0, 0), AT(0, 30)),                                   # closed: the next slot opens
    (AT(1, 0), AT(2, 30).replace(second=1)),                 # open: it closes (its end included)
    (AT(3, 0), AT(0, 30, day=28)),                           # closed again: tomorrow's slot
])
def test_the_next_moment_the_window_check_can_change(now, expected):
    from datetime import timedelta

    from backup_repository.domain.windows import next_change

    assert next_change((NIGHTLY,), now) == expected
    # the answer is the same all the way until then, for a backup that came yesterday
    yesterday = AT(1, 0, day=26)
    before = check_latest_backup((NIGHTLY,), yesterday, now)
    assert check_latest_backup((NIGHTLY,), yesterday, expected - timedelta(seconds=1)) == before
    assert next_change((), now) is None


def test_the_last_second_before_a_firing_is_inside_the_running_slot():
    """Half a second before a minute boundary the slot that started a minute ago is the latest one (it used to
    find the next minute's firing and call an always-open window closed, once a minute)."""
    every_minute = BackupWindow("* * * * *", 120, "2m")
    just_before = AT(12, 0).replace(second=59, microsecond=500000)
    assert is_open((every_minute,), just_before)
    assert check_latest_backup((every_minute,), None, just_before) is None
    assert is_open((every_minute,), AT(12, 1))  # fires right now: counts
