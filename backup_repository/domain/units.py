"""Parsing of Go-style durations (``1h30m``, ``5s``, ``0h05m0s``) and of sizes (``5M``, ``1GiB``); sizes written
for people (``1.5MiB``).

Durations follow Go's ``time.ParseDuration`` (units ns, us, µs, ms, s, m, h), extended with ``d`` (24 h)
because collection documents use it (``keepLastOlderNotMoreThan: 5d``). Sizes are always binary:
``1M`` is 1048576 bytes, like the Go server.
"""

import re

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    "p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
    "e": 1 << 60, "eb": 1 << 60, "eib": 1 << 60,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text) -> float:
    """Return the number of seconds in a Go duration string; raise ValueError when it is not one."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        # YAML may hand us a bare number; Go only accepts "0" without a unit, so do we.
        if text == 0:
            return 0.0
        raise ValueError(f"invalid duration {text!r}: a unit is required (for example 30s, 5m, 2h)")
    value = str(text).strip()
    if not value:
        raise ValueError("invalid duration '': empty")
    sign = 1.0
    if value[0] in "+-":
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if not match:
            raise ValueError(
                f"invalid duration {text!r}: expected a number followed by one of ns, us, ms, s, m, h, d"
            )
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return sign * total


def parse_size(text) -> int:
    """Return the number of bytes in a size like ``512``, ``5M``, ``1.5GiB``; raise ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return text
    if isinstance(text, float):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return int(text)
    match = _SIZE.match(str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit B, K, M, G, T, P or E (binary)"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_size(size: float) -> str:
    """Bytes in binary units for people: ``512B``, ``1.5MiB``, ``12GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size}{unit}" if unit == "B" else f"{size:.1f}".rstrip("0").rstrip(".") + unit
        size /= 1024
    return f"{size}B"
