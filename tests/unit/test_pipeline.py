"""The upload pipeline's parts: multipart extraction, OpenPGP checks, the size budget; and Range parsing."""

import asyncio
import random

import pytest

from backup_repository.domain.errors import BadRequest, PayloadTooLarge, RangeNotSatisfiable
from backup_repository.http.collections import parse_range
from backup_repository.storage.pipeline import GpgCheck, MultipartFile, UploadPipeline, packet_tag

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


def gpg_ok(*pieces) -> bool:
    check = GpgCheck()
    try:
        for piece in pieces:
            check.feed(piece)
        check.finish()
    except BadRequest:
        return False
    return True


def test_armored_messages():
    message = b"-----BEGIN PGP MESSAGE-----\n\nhQEMA...\n=abcd\n-----END PGP MESSAGE-----\n"
    assert gpg_ok(message)
    assert gpg_ok(*[message[i:i + 1] for i in range(len(message))])  # one byte at a time
    assert gpg_ok(b"\n\r\n" + message + b"\n\n")
    assert not gpg_ok(message[:-10])  # footer cut off
    assert not gpg_ok(b"-----BEGIN PGP SIGNATURE-----\n" + message)
    assert not gpg_ok(b"-----BEGIN PGP")  # too short to be anything
    assert not gpg_ok(b"plain text that is long enough to be judged")


@pytest.mark.parametrize("head, ok", [
    ("85 01 0c 03", True),     # old format, tag 1 (public-key encrypted session key), 2-octet length, v3
    ("84 5e 03", True),        # old format, tag 1, 1-octet length, v3 (gpg with an ECC key)
    ("8c 0d 04", True),        # old format, tag 3 (symmetric-key encrypted session key), v4 (gpg --symmetric)
    ("c1 0c 03", True),        # new format, tag 1
    ("c1 ff 00 00 01 0c 06", True),  # new format, 5-octet length, v6
    ("c3 0d 05", True),        # new format, tag 3, v5
    ("d2 e0 01", True),        # new format, tag 18 (integrity-protected data), partial length, v1
    ("d2 c0 10 02", True),     # tag 18, 2-octet length, v2
    ("a4 10", True),           # old format, tag 9 (symmetrically encrypted data): no version byte
    ("d4 10 01", True),        # new format, tag 20 (AEAD), v1
    ("85 01 0c 07", False),    # tag 1 with an unknown version
    ("8c 0d 01", False),       # tag 3 with an unknown version
    ("a3 01", False),          # old format, tag 8: compressed data (not encrypted)
    ("89 01 0c 04", False),    # old format, tag 2: a signature
    ("c6 0c 04", False),       # new format, tag 6: a public key
    ("1f 8b 08", False),       # gzip: bit 7 clear
])
def test_binary_messages_by_first_packet(head, ok):
    assert gpg_ok(bytes.fromhex(head) + b"rest of the message") is ok


def test_a_binary_start_too_short_to_judge_is_refused():
    assert not gpg_ok(bytes.fromhex("85 01"))


def test_packet_tags():
    assert packet_tag(0x85) == 1 and packet_tag(0xC1) == 1 and packet_tag(0xD2) == 18 and packet_tag(0xA4) == 9


class MemoryWriter:
    def __init__(self):
        self.data = b""
        self.aborted = False

    def write(self, data):
        self.data += bytes(data)

    async def close(self):
        return len(self.data)

    async def abort(self):
        self.aborted = True


def test_budget_is_counted_on_the_file_only():
    content = b"-----BEGIN PGP MESSAGE-----\n" + b"a" * 100 + b"\n-----END PGP MESSAGE-----\n"
    body = form([(FILE_HEADERS, content)])
    exact = UploadPipeline(MemoryWriter(), len(content), f"multipart/form-data; boundary={BOUNDARY}")
    exact.feed(body)
    assert asyncio.run(exact.finish()) == len(content) and exact.writer.data == content

    short = UploadPipeline(MemoryWriter(), len(content) - 1, f"multipart/form-data; boundary={BOUNDARY}")
    with pytest.raises(PayloadTooLarge, match=f"Uploaded {len(content)} bytes, allowed to upload only "
                                              f"{len(content) - 1} bytes"):
        short.feed(body)


def test_empty_body():
    with pytest.raises(BadRequest, match="sent empty data$"):
        asyncio.run(UploadPipeline(MemoryWriter(), 10, "").finish())


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
