"""The rules of an upload body (domain/uploads.py, domain/multipart.py): multipart extraction, OpenPGP checks, the
size budget; and Range parsing."""

import random

import pytest

from backup_repository.domain.errors import BadRequest, PayloadTooLarge, RangeNotSatisfiable
from backup_repository.http.collections import parse_range
from backup_repository.domain.multipart import MultipartFile
from backup_repository.domain.uploads import UploadBody
from tests.support import pgp_message

BOUNDARY = "------------------------d74496d66958873e"


def form(parts, boundary=BOUNDARY) -> bytes:
    out = b"preamble to ignore\r\n"
    for headers, content in parts:
        out += f"--{boundary}\r\n".encode() + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\nepilogue".encode()


def extract(body: bytes, sizes) -> bytes:
    parser = MultipartFile(BOUNDARY.encode())
    out = b""
    position = 0
    for size in sizes:
        out += b"".join(parser.feed(body[position:position + size]))
        position += size
    out += b"".join(parser.feed(body[position:]))
    parser.finish()
    return out


FILE_HEADERS = b'Content-Disposition: form-data; name="file"; filename="x.gpg"\r\nContent-Type: application/pgp'


@pytest.mark.parametrize("split", [1, 2, 3, 7, 45, 46, 47, 1000, 1 << 20])
def test_the_file_part_comes_out_whole_however_the_body_is_split(split):
    content = bytes(random.Random(split).randrange(256) for _ in range(5000)) + b"\r\n--" + b"\r\n"
    body = form([(b'Content-Disposition: form-data; name="comment"', b"hello\r\n--not-a-boundary"),
                 (FILE_HEADERS, content),
                 (b'Content-Disposition: form-data; name="file"; filename="second"', b"ignored")])
    assert extract(body, [split] * (len(body) // split + 1)) == content


def test_random_splits_and_a_boundary_like_payload():
    content = (b"\r\n--" + BOUNDARY.encode()[:-1] + b"X") * 300
    body = form([(FILE_HEADERS, content)])
    rng = random.Random(7)
    for _ in range(50):
        assert extract(body, [rng.randrange(1, 200) for _ in range(200)]) == content


def test_a_form_without_a_file_part_or_cut_short_is_refused():
    with pytest.raises(BadRequest, match='no part named "file"'):
        extract(form([(b'Content-Disposition: form-data; name="other"', b"x")]), [])
    body = form([(FILE_HEADERS, b"a" * 100)])
    parser = MultipartFile(BOUNDARY.encode())
    parser.feed(body[:200])
    with pytest.raises(BadRequest, match="ended before its closing delimiter"):
        parser.finish()


def test_content_types():
    assert MultipartFile.for_content_type("application/x-www-form-urlencoded") is None  # curl --data-binary
    assert MultipartFile.for_content_type("") is None
    assert MultipartFile.for_content_type(f'multipart/form-data; boundary="{BOUNDARY}"') is not None
    with pytest.raises(BadRequest, match="no boundary"):
        MultipartFile.for_content_type("multipart/form-data")


class Body:
    """An UploadBody and the file bytes it let through, as the upload service stores them."""

    def __init__(self, allowed: int, content_type: str = ""):
        self.rules = UploadBody(allowed, content_type)
        self.data = b""

    def feed(self, chunk: bytes):
        self.data += b"".join(bytes(piece) for piece in self.rules.accept(chunk))

    def finish(self) -> int:
        self.rules.finish()
        return len(self.data)


def test_the_pipeline_checks_the_openpgp_structure():
    """The checks themselves are tested in test_openpgp.py; here: the pipeline runs them on the file part."""
    message = pgp_message(b"payload" * 100)
    accepted = Body(10_000, f"multipart/form-data; boundary={BOUNDARY}")
    body = form([(FILE_HEADERS, message)])
    for position in range(0, len(body), 7):
        accepted.feed(body[position:position + 7])
    assert accepted.finish() == len(message) and accepted.data == message

    truncated = Body(10_000)
    truncated.feed(message[:-1])
    with pytest.raises(BadRequest, match="does not contain a valid GPG footer") as refused:
        truncated.finish()
    assert refused.value.detail == "body ends inside a packet (tag 18)"

    with pytest.raises(BadRequest, match="does not contain a valid GPG header"):
        Body(10_000).feed(b"plain text")
    with pytest.raises(BadRequest, match="does not contain a valid GPG header"):
        Body(10_000).feed(b"\xcb\x0e" + b"b\x00\x00\x00\x00\x00literal")  # literal data


def packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


SEIPD = packet(18, b"\x01" + b"encrypted" * 60)


@pytest.mark.parametrize("message, ok", [
    (packet(1, b"\x03" + bytes(20)) + SEIPD, True),  # public-key encrypted session key, v3
    (packet(1, b"\x06" + bytes(20)) + SEIPD, True),  # and v6
    (packet(3, b"\x04" + bytes(12)) + SEIPD, True),  # symmetric-key encrypted session key (gpg --symmetric)
    (packet(3, b"\x05" + bytes(12)) + SEIPD, True),
    (packet(3, b"\x06" + bytes(12)) + SEIPD, True),
    (SEIPD, True),                                 # integrity-protected data alone
    (packet(18, b"\x02" + bytes(100)), True),      # SEIPD v2
    (packet(9, bytes(100)), True),                 # symmetrically encrypted data: no version byte
    (packet(20, b"\x01" + bytes(100)), True),      # AEAD encrypted data
    (packet(1, b"\x07" + bytes(20)) + SEIPD, False),  # an unknown version
    (packet(3, b"\x01" + bytes(12)) + SEIPD, False),
    (packet(8, b"\x01" + bytes(100)), False),      # compressed data (not encrypted)
    (packet(2, b"\x04" + bytes(100)), False),      # a signature
    (packet(6, b"\x04" + bytes(100)), False),      # a public key
    (b"\x1f\x8b\x08" + bytes(100), False),         # gzip: bit 7 clear
])
def test_binary_messages_by_first_packet(message, ok):
    pipeline = Body(10_000)
    try:
        pipeline.feed(message)
        pipeline.finish()
    except BadRequest as error:
        assert not ok and "valid GPG header" in error.message
    else:
        assert ok


def test_budget_is_counted_on_the_file_only():
    content = pgp_message(b"a" * 100)
    body = form([(FILE_HEADERS, content)])
    exact = Body(len(content), f"multipart/form-data; boundary={BOUNDARY}")
    exact.feed(body)
    assert exact.finish() == len(content) and exact.data == content

    short = Body(len(content) - 1, f"multipart/form-data; boundary={BOUNDARY}")
    with pytest.raises(PayloadTooLarge, match=f"Uploaded {len(content)} bytes, allowed to upload only "
                                              f"{len(content) - 1} bytes"):
        short.feed(body)


def test_empty_body():
    with pytest.raises(BadRequest, match="sent empty data$"):
        Body(10, "").finish()


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-9", (0, 10)), ("bytes=10-", (10, 100)), ("bytes=-10", (90, 100)), ("bytes=90-200", (90, 100)),
    ("bytes=-200", (0, 100)), ("bytes=99-99", (99, 100)), (" bytes = 1 - 2 ", (1, 3)),
    ("bytes=0-1,4-5", None), ("bytes=5-1", None), ("items=0-1", None), ("bytes=-", None), ("bytes=a-b", None),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_the_minimum_rate_rule():
    from backup_repository.domain.uploads import MinimumRate

    trickle = MinimumRate(100, 10, now=0.0)
    verdicts = []
    for second in range(1, 15):
        trickle.add(2)
        verdicts.append(trickle.too_slow(float(second)))
    assert verdicts[:9] == [None] * 9 and verdicts[9] == 2.0  # judged once a whole window has passed

    steady = MinimumRate(100, 10, now=0.0)
    for second in range(1, 100):
        steady.add(150)
        assert steady.too_slow(float(second)) is None

    # a pause of minutes is fine when the window's average holds (a dump waiting for a lock, then data)
    bursty = MinimumRate(100, 300, now=0.0)
    for second in range(1, 1000):
        bursty.add(40_000 if second % 240 == 0 else 0)
        assert bursty.too_slow(float(second)) is None, second

    # the store's back-pressure never counts against the client
    held = MinimumRate(100, 10, now=0.0)
    held.add(5000)
    held.store_waits(1.0)
    assert all(held.too_slow(float(second)) is None for second in range(2, 120))
    held.store_caught_up(120.0)
    assert held.client_time(121.0) == 2.0
    assert MinimumRate(0, 10, now=0.0).too_slow(1000.0) is None  # 0: no rule
