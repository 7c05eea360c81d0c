import pytest

from backup_repository.domain.units import parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("5s", 5), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("0h05m0s", 300), ("180m", 10800),
    ("1.5h", 5400), ("500ms", 0.5), ("0", 0), ("5d", 432000), ("12h", 43200), ("87600h", 315360000),
    ("-1m", -60), ("1h1m1s", 3661),
])
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "h", "5", "1h 30m", "abc", "5S", "1..5s", True])
def test_invalid_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [
    ("512", 512), (512, 512), ("1B", 1), ("1K", 1024), ("1KB", 1024), ("1KiB", 1024), ("5M", 5 << 20),
    ("5MB", 5 << 20), ("5MiB", 5 << 20), ("1G", 1 << 30), ("2GiB", 2 << 30), ("1T", 1 << 40),
    ("1TiB", 1 << 40), ("1P", 1 << 50), ("1E", 1 << 60), ("1.5G", 3 << 29), ("100m", 100 << 20),
])
def test_binary_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "5X", "M", "-5M", "5 MBs", "1,5G", -1, True])
def test_invalid_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)
