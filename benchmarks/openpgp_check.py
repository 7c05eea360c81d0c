"""How fast the structural OpenPGP check of uploads runs, in process (no server, no disk).

    .venv/bin/python benchmarks/openpgp_check.py

Feeds 256 MiB synthetic messages in 1 MiB chunks (the size the server hands to the upload pipeline) and prints
MiB/s of the time spent inside ``MessageCheck.feed``/``finish``; then the primitives an armored body could be
decoded with, on 1 MiB of armor text (the choices behind domain/openpgp.py). Figures: docs/performance.md.
"""

import base64
import binascii
import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backup_repository.domain.openpgp import MessageCheck, crc24  # noqa: E402

MiB = 1 << 20
PKESK = bytes([0xC1, 0xFF]) + (13).to_bytes(4, "big") + b"\x03" + bytes(8) + b"\x01\x00\x01\x01"
BEGIN, END = b"-----BEGIN PGP MESSAGE-----\n", b"-----END PGP MESSAGE-----\n"


def chunked(pieces, size=MiB):
    """The concatenation of ``pieces`` in chunks of ``size``, without holding more than a chunk or two."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def throughput(label, chunks):
    """Feeds the chunks and prints MB/s of the time spent in feed() and finish(); asserts only the verdict."""
    check, spent, total = MessageCheck(), 0.0, 0
    for chunk in chunks:
        started = time.perf_counter()
        check.feed(chunk)
        spent += time.perf_counter() - started
        total += len(chunk)
    started = time.perf_counter()
    check.finish()
    spent += time.perf_counter() - started
    print(f"\n{label}: {total / MiB:.0f} MiB in {spent:.3f}s = {total / MiB / max(spent, 1e-9):.0f} MiB/s")


def main():
    block = random.Random(2).randbytes(MiB)
    count = 256
    throughput("binary, 5-octet length", chunked(
        [PKESK, bytes([0xD2, 0xFF]) + (count * MiB + 1).to_bytes(4, "big") + b"\x01"] + [block] * count))
    for power in (13, 20):
        size = 1 << power
        repeats = count * MiB // size
        pieces = [PKESK, bytes([0xD2, 0xE0 | power]), b"\x01", block[:size - 1]]
        pieces += [bytes([0xE0 | power]) + block[:size]] * (repeats - 1) + [b"\x00"]
        throughput(f"binary, partial lengths of {size >> 10} KiB", chunked(pieces))
    # armored: lines of 64 characters; the encrypted data is 48-octet aligned so the same lines repeat
    head = PKESK + bytes([0xD2, 0xFF]) + (1 + 22 + count * 48 * 21845).to_bytes(4, "big") + b"\x01"
    head += bytes(48 - len(head) % 48)
    period = block[:48 * 21845]
    crc = crc24(head)
    for _ in range(count):
        crc = crc24(period, crc)
    lines = b"".join(base64.b64encode(period[i:i + 48]) + b"\n" for i in range(0, len(period), 48))
    throughput("armored", chunked([BEGIN, b"\n", base64.encodebytes(head).replace(b"\n", b"")]
                                  + [b"\n"] + [lines] * count
                                  + [b"=" + base64.b64encode(crc.to_bytes(3, "big")) + b"\n" + END]))


def primitives():
    """MB/s of armor text (64-character lines) through each way of checking and decoding it, and of sha256."""
    import pybase64

    from backup_repository.domain.openpgp import WHITESPACE

    text = base64.b64encode(random.Random(3).randbytes(48 * 21845))
    text = b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))
    compact = text.replace(b"\n", b"")
    decoded = pybase64.b64decode(compact)
    ways = {
        "line breaks out: bytes.translate (before)": lambda: text.translate(None, WHITESPACE),
        "line breaks out: bytes.replace (memchr, now)": lambda: text.replace(b"\n", b""),
        "base64: binascii strict (before)": lambda: binascii.a2b_base64(compact, strict_mode=True),
        "base64: pybase64 validate=True (SIMD, now)": lambda: pybase64.b64decode(compact, validate=True),
        "both, before: translate + binascii strict": lambda: binascii.a2b_base64(
            text.translate(None, WHITESPACE), strict_mode=True),
        "both, now: replace + pybase64": lambda: pybase64.b64decode(text.replace(b"\n", b""), validate=True),
        "CRC-24 (anycrc) of the decoded data": lambda: crc24(decoded),
        "sha256 (hashlib, SHA-NI where the CPU has it)": lambda: hashlib.sha256(text).digest(),
    }
    print(f"\nprimitives, MB/s of armor text ({pybase64.get_version()}):")
    for label, way in ways.items():
        rounds, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            way()
            rounds += 1
        print(f"  {label:<48} {rounds * len(text) / (time.perf_counter() - started) / 1e6:8.0f}")


if __name__ == "__main__":
    main()
    primitives()
