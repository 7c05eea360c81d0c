"""Backup windows: when uploads are allowed, and whether the latest backup arrived on time (docs/api.md#upload,
docs/api.md#collection-health).

A window ``{from: cron, duration}`` is open from each time the cron expression fires until ``duration`` later.
Cron expressions are evaluated in the server's local time zone, as the Go server did (``TZ`` sets it; services
and containers usually run in UTC).
"""

from datetime import datetime, timedelta
from typing import Optional

from croniter import croniter

from backup_repository.domain.collections import BackupWindow


def latest_slot(window: BackupWindow, now: datetime):
    """(start, end) of the most recent slot that started at or before ``now``."""
    local_now = now.astimezone()
    # croniter's get_prev is strictly before its start: start one second later so that "fires right now" counts,
    # and step back once more when that found the firing of the next second (now is just before it)
    start = croniter(window.cron, local_now + timedelta(seconds=1)).get_prev(datetime)
    if start > local_now:
        start = croniter(window.cron, start).get_prev(datetime)
    return start, start + timedelta(seconds=window.duration)


def in_latest_slot(window: BackupWindow, now: datetime, moment: datetime) -> bool:
    start, end = latest_slot(window, now)
    return start <= moment <= end


def is_open(windows, now: datetime) -> bool:
    """True when there are no windows, or ``now`` is inside a slot of one of them."""
    return not windows or any(in_latest_slot(w, now, now) for w in windows)


def check_latest_backup(windows, latest_created_at: Optional[datetime], now: datetime) -> Optional[str]:
    """None when the latest backup arrived in the most recent slot of some window (or a slot is open now, so it
    may be in progress); otherwise the BackupWindowValidator message."""
    if not windows:
        return None
    if any(in_latest_slot(w, now, now) for w in windows):
        return None
    if latest_created_at is None:
        return "cannot find any backup in the collection: no version was uploaded yet"
    if any(in_latest_slot(w, now, latest_created_at) for w in windows):
        return None
    slots = ", ".join(f"interval({w.cron}) + {w.duration_text}" for w in windows)
    return (f"previous backup was not executed in expected time slots: {slots}. "
            f"Latest backup created at: {latest_created_at.isoformat()}")


def next_change(windows, now: datetime) -> Optional[datetime]:
    """The next moment at which check_latest_backup's answer can change without a new backup: a slot opening or
    closing. None without windows (the answer then never changes by itself)."""
    moments = []
    for window in windows:
        start, end = latest_slot(window, now)
        if end >= now:
            moments.append(end + timedelta(seconds=1))  # the slot includes its end
        moments.append(croniter(window.cron, now.astimezone()).get_next(datetime))
    return min(moments) if moments else None


#: Firings of a window's cron expression looked at to find its longest gap (weekdays-only: a weekend; monthly: a
#: 31-day month).
GAP_FIRINGS = 12


def expected_interval(windows, now: datetime) -> Optional[float]:
    """Seconds: the longest time between two backups that both arrive on time — for a window, its longest gap
    between two firings (over the next GAP_FIRINGS) plus its duration (a backup at the start of one slot, the next
    at the end of the following one); with several windows, the shortest of these (a slot of any window will do).
    None without windows: no backup is expected at any time (docs/monitoring.md#alerts)."""
    best = None
    for window in windows:
        firings = croniter(window.cron, now.astimezone())
        previous = firings.get_next(datetime)
        gap = 0.0
        for _ in range(GAP_FIRINGS):
            following = firings.get_next(datetime)
            gap = max(gap, (following - previous).total_seconds())
            previous = following
        interval = gap + window.duration
        best = interval if best is None else min(best, interval)
    return best
