"""The structural OpenPGP check of uploads (domain/openpgp.py): real gpg output is accepted however it is split,
anything that cannot be an encrypted message is refused with the header or the footer message."""

import base64
import os
import random
import shutil
import subprocess

import pytest

from backup_repository.domain.errors import BadRequest
from backup_repository.domain.openpgp import NO_GPG_FOOTER, NO_GPG_HEADER, STREAM_ERROR, MessageCheck, crc24
from tests.support import PGP_OVERHEAD, pgp_message

HEADER, FOOTER = STREAM_ERROR + NO_GPG_HEADER, STREAM_ERROR + NO_GPG_FOOTER
BEGIN, END = b"-----BEGIN PGP MESSAGE-----\n", b"-----END PGP MESSAGE-----\n"


def verdict(data, sizes=None):
    """The string "ok", or (message, detail) of the refusal; ``sizes`` yields chunk sizes (default: one piece)."""
    check = MessageCheck()
    position = 0
    try:
        for size in sizes or [len(data)]:
            check.feed(data[position:position + size])
            position += size
            if position >= len(data):
                break
        check.feed(data[position:])
        check.finish()
    except BadRequest as error:
        return error.message, error.detail
    return "ok"


def random_sizes(seed, largest):
    rng = random.Random(seed)
    while True:
        yield rng.randrange(1, largest)


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with a 5-octet length."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def partial_packet(tag: int, body: bytes, power: int) -> bytes:
    """A new-format packet whose body is sent in partial chunks of 2**power octets, then a definite remainder."""
    size, out, position = 1 << power, bytes([0xC0 | tag]), 0
    while len(body) - position > size:
        out += bytes([0xE0 | power]) + body[position:position + size]
        position += size
    rest = body[position:]
    return out + bytes([0xFF]) + len(rest).to_bytes(4, "big") + rest


def armor(binary: bytes, crc: bool = True) -> bytes:
    lines = base64.encodebytes(binary)
    checksum = b"=" + base64.b64encode(crc24(binary).to_bytes(3, "big")) + b"\n" if crc else b""
    return BEGIN + b"Comment: made by a test\n\n" + lines + checksum + END


PKESK = packet(1, b"\x03" + bytes(8) + b"\x01\x00\x01\x01")
SKESK = packet(3, b"\x04\x09\x03\x02" + bytes(8) + b"\xff")


def seipd(payload: bytes) -> bytes:
    return packet(18, b"\x01" + payload)


# --- real gpg output ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def gpg_messages(tmp_path_factory):
    """name -> bytes of messages made by the gpg binary, from a pipe (gpg then streams with partial lengths) unless
    the mode says "file": public-key, symmetric, several recipients, --rfc4880 and --openpgp, compressed
    (gpg's default) and not (-z 0), binary and armored, of an empty, a small and a 3 MiB plaintext."""
    if not shutil.which("gpg"):
        pytest.skip("gpg is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback"]
    for key in ("x@example.org", "y@example.org", "z@example.org"):
        subprocess.run(gpg + ["--passphrase", "", "--quick-generate-key", key, "default", "default", "never"],
                       env=env, check=True, capture_output=True)
    plaintexts = {"small": b"hello, backups\n", "empty": b"", "large": random.Random(1).randbytes(3 << 20)}
    public = ["--trust-model", "always", "-r", "x@example.org", "--encrypt"]
    modes = {"public": public, "symmetric": ["--passphrase", "pw", "--symmetric"],
             "recipients": ["--trust-model", "always", "-r", "x@example.org", "-r", "y@example.org", "-r",
                            "z@example.org", "--encrypt"],
             "both": public + ["--symmetric", "--passphrase", "pw"],  # a PKESK and an SKESK
             "rfc4880": ["--rfc4880"] + public, "openpgp": ["--openpgp"] + public,
             "uncompressed": ["-z", "0"] + public, "file": public}
    messages = {}
    for text_name, plaintext in plaintexts.items():
        source = home / f"{text_name}.txt"
        source.write_bytes(plaintext)
        for mode, arguments in modes.items():
            for armored in (False, True):
                command = gpg + arguments + (["--armor"] if armored else []) + (
                    ["--output", "-", str(source)] if mode == "file" else [])
                out = subprocess.run(command, input=None if mode == "file" else plaintext, env=env, check=True,
                                     capture_output=True).stdout
                messages[f"{mode}-{text_name}-{'armored' if armored else 'binary'}"] = out
    yield messages
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)


NAMES = [f"{mode}-{text}-{kind}" for mode in ("public", "symmetric", "recipients", "both", "rfc4880", "openpgp",
                                              "uncompressed", "file")
         for text in ("small", "empty", "large") for kind in ("binary", "armored")]


@pytest.mark.parametrize("name", NAMES)
def test_real_messages_are_accepted_however_they_are_split(gpg_messages, name):
    message = gpg_messages[name]
    assert verdict(message) == "ok"
    assert verdict(bytearray(message)) == "ok"
    assert verdict(memoryview(message)) == "ok"
    for seed in range(3):
        assert verdict(message, random_sizes(seed, 70_000 if "large" in name else 300)) == "ok"
    if len(message) < 10_000:
        assert verdict(message, iter(lambda: 1, 0)) == "ok"  # byte by byte
    assert verdict(message + b"\n\r\n" if "armored" in name else message) == "ok"


def test_gpg_sends_large_messages_with_partial_body_lengths(gpg_messages):
    message = gpg_messages["public-large-binary"]
    assert message[0] == 0x85  # old-format PKESK with a 2-octet length
    data = 3 + int.from_bytes(message[1:3], "big")
    assert message[data] == 0xD2 and 224 <= message[data + 1] < 255  # SEIPD with a partial length


@pytest.mark.parametrize("name", NAMES)
def test_real_messages_cut_or_extended_are_refused(gpg_messages, name):
    message = gpg_messages[name]
    if "armored" in name:
        message = message.rstrip()  # the line break after the END line is optional
    for changed in (message[:-1], message + b"x", message + b"\x00"):
        assert verdict(changed)[0] == FOOTER
        assert verdict(changed, random_sizes(4, 5000))[0] == FOOTER
    if "binary" in name:
        assert verdict(message[:-1])[1].startswith("body ends inside a packet")
        assert verdict(message + b"\xd2\x01\x01") == (FOOTER, "packet tag 18 (integrity-protected encrypted data): "
                                                              "a second encrypted data packet")


@pytest.mark.parametrize("name", ["public-large-armored", "symmetric-small-armored"])
def test_a_flipped_base64_character_is_a_crc_mismatch(gpg_messages, name):
    message = gpg_messages[name]
    lines = message.split(b"\n")
    line = len(lines) - 5  # a full base64 line near the end: inside the encrypted data
    lines[line] = lines[line][:10] + (b"B" if lines[line][10:11] != b"B" else b"C") + lines[line][11:]
    assert verdict(b"\n".join(lines)) == (FOOTER, "CRC-24 mismatch")


def test_armor_without_a_crc_line_is_accepted_when_the_data_is_valid(gpg_messages):
    for name in ("public-small-armored", "symmetric-large-armored"):
        lines = gpg_messages[name].split(b"\n")
        assert lines[-3].startswith(b"=") and len(lines[-3]) == 5
        del lines[-3]
        assert verdict(b"\n".join(lines)) == "ok"
        assert verdict(b"\n".join(lines).replace(b"\n", b"\r\n")) == "ok"


def test_junk_after_the_end_line_is_refused(gpg_messages):
    message = gpg_messages["public-small-armored"]
    assert verdict(message + b"\n\njunk\n") == (FOOTER, "4 non-whitespace bytes after the END line")
    assert verdict(message + b"  \n\t\n") == "ok"
    assert verdict(message + BEGIN)[0] == FOOTER  # a second message
    check = MessageCheck()
    check.feed(message)
    with pytest.raises(BadRequest, match="GPG footer") as refused:
        check.feed(b"x")
    assert refused.value.detail == "1 non-whitespace bytes after the END line"


# --- refusals ----------------------------------------------------------------------------------------------------

PLAIN = b"This is not encrypted at all, it is the plaintext of a backup: " * 10


@pytest.mark.parametrize("body, message, detail", [
    (b"", HEADER, "empty body"),
    (b"\xa5", HEADER, "body ends inside a packet (tag 9)"),
    (b"\xc9" + PLAIN, FOOTER, "first octet of a packet header is 0x61: bit 7 is clear, this is no packet"),
    # after a valid BEGIN line (the armor's header), every fault is a footer fault
    (BEGIN + b"\n" + PLAIN + b"\n" + END, FOOTER,
     "first octet of a packet header is 0x4e: bit 7 is clear, this is no packet"),
    (BEGIN + b"\n" + base64.encodebytes(PLAIN) + END, FOOTER,
     "first octet of a packet header is 0x54: bit 7 is clear, this is no packet"),
    (BEGIN + b"\n" + b"hello, world\n" + END, FOOTER, "invalid base64 character b','"),  # "hell" is a PKESK header
    (BEGIN + b"\n" + END, FOOTER, "no encrypted data packet"),
    (BEGIN, FOOTER, "no END line"),
    (BEGIN + b"\n" + random.Random(0).randbytes(1 << 16), FOOTER, "invalid base64 character"),
    (b"\n\n  " + BEGIN[:-5], HEADER, "no complete armor header line"),
    (b"-----BEGIN PGP SIGNATURE-----\n", HEADER, "neither an OpenPGP packet nor an armor header line"),
    (b"\x1f\x8b\x08\x00", HEADER, "neither an OpenPGP packet nor an armor header line"),  # gzip
    (packet(11, b"b\x00\x00\x00\x00\x00" + PLAIN), HEADER,
     "packet tag 11 (literal data) where an encrypted session key or encrypted data was expected"),
    (b"\xa3\x01" + PLAIN, HEADER,
     "packet tag 8 (compressed data) where an encrypted session key or encrypted data was expected"),
    (b"\xc0\x01\x00", HEADER, "packet tag 0 (reserved) where an encrypted session key or encrypted data was expected"),
    (bytes([0xC1, 0xE9]) + bytes(512) + b"\x00" + seipd(PLAIN), HEADER,
     "partial body length on packet tag 1 (public-key encrypted session key)"),
    (b"\x87" + bytes(100), HEADER, "indeterminate length on packet tag 1 (public-key encrypted session key)"),
    # an indeterminate length would let the rest of the body through unseen: refused on every packet, encrypted data
    # included (RFC 9580 deprecates it, no current encoder writes it), with the header message even after a
    # session key packet
    (b"\xa7", HEADER, "indeterminate length on packet tag 9 (symmetrically encrypted data)"),
    (b"\xa7" + PLAIN, HEADER, "indeterminate length on packet tag 9 (symmetrically encrypted data)"),
    (PKESK + b"\xa7" + PLAIN, HEADER, "indeterminate length on packet tag 9 (symmetrically encrypted data)"),
    (b"\xa7" + bytes(100), HEADER, "indeterminate length on packet tag 9 (symmetrically encrypted data)"),
    (packet(1, b"\x03" + bytes(5)) + seipd(PLAIN), HEADER, "packet tag 1 (public-key encrypted session key) of "
                                                          "6 octets"),
    (packet(1, b"\x04" + bytes(20)) + seipd(PLAIN), HEADER, "packet tag 1 (public-key encrypted session key) of "
                                                           "unknown version 4"),
    (packet(3, b"\x03" + bytes(20)) + seipd(PLAIN), HEADER, "packet tag 3 (symmetric-key encrypted session key) "
                                                           "of unknown version 3"),
    (packet(18, b"\x03" + PLAIN), HEADER, "packet tag 18 (integrity-protected encrypted data) of unknown version 3"),
    (packet(18, b""), HEADER, "packet tag 18 (integrity-protected encrypted data) too short for its version octet"),
    (partial_packet(18, b"\x01" + PLAIN, 8), HEADER, "partial body length of 256 octets; at least 512 are required"),
    # later chunks too: tiny ones would cost the event loop a Python step per few octets
    (PKESK + bytes([0xD2, 0xE9]) + b"\x01" + bytes(511) + b"\xe8" + bytes(256) + b"\x05" + bytes(5), FOOTER,
     "partial body length of 256 octets; at least 512 are required"),
    (PKESK + SKESK, FOOTER, "no encrypted data packet"),
    (PKESK + packet(10, b"PGP") + seipd(PLAIN), FOOTER, "marker packet after a session key packet"),
    (packet(10, b"PGX") + seipd(PLAIN), HEADER, "marker packet does not say PGP"),
    (PKESK + packet(11, PLAIN), FOOTER,
     "packet tag 11 (literal data) where an encrypted session key or encrypted data was expected"),
    (PKESK + seipd(PLAIN) + seipd(PLAIN), FOOTER,
     "packet tag 18 (integrity-protected encrypted data): a second encrypted data packet"),
    (PKESK + seipd(PLAIN) + packet(2, PLAIN), FOOTER, "packet tag 2 (signature) after the encrypted data packet"),
    (PKESK + seipd(PLAIN) + b"\x00", FOOTER, "first octet of a packet header is 0x00: bit 7 is clear, this is no "
                                             "packet"),
])
def test_refused(body, message, detail):
    for sizes in (None, iter(lambda: 1, 0)):
        refused = verdict(body, sizes)
        assert refused[0] == message and refused[1].startswith(detail)


def test_armored_refusals():
    message = armor(PKESK + seipd(PLAIN))
    assert verdict(message) == "ok"
    for indeterminate in (b"\xa7" + PLAIN, PKESK + b"\xa7" + PLAIN):
        assert verdict(armor(indeterminate)) == (HEADER, "indeterminate length on packet tag 9 (symmetrically "
                                                         "encrypted data)")
    crc_line = message.split(b"\n")[-3]
    assert verdict(message.replace(b"\n=", b"\n=AAAA\n=")) == (FOOTER, "unexpected line before the END line: "
                                                                       + repr(crc_line))
    body = message.split(b"\n\n", 1)[1]
    assert verdict(BEGIN + b"\n" + body[:200] + b"*" + body[200:])[0] == FOOTER  # invalid base64 character
    assert verdict(BEGIN + b"\n" + body[:200] + b"*" + body[200:])[1] == "invalid base64 character b'*'"
    assert verdict(BEGIN + b"\n" + body.replace(END, b"")) == (FOOTER, "no END line")
    assert verdict(BEGIN + b"\n" + body.replace(b"-----\n", b"-----")) == "ok"  # no line break at the very end
    assert verdict(BEGIN + b"\n" + body.replace(b"\n-----END", b"-----END"))[0] == FOOTER
    cut = body.index(b"=")  # the padding of the last base64 line, and whatever follows it
    assert verdict(BEGIN + b"\n" + body[:cut - 1] + body[cut:]) == (FOOTER, "bad end of the base64 data: b'='")
    assert verdict(BEGIN + b"\n" + body[:cut] + b"\n" + END) == (FOOTER, "base64 data ends inside a 4-character "
                                                                        "group")


def test_armor_headers_and_line_breaks():
    binary = PKESK + seipd(PLAIN)
    lines = base64.encodebytes(binary)
    assert verdict(b"\r\n  \n" + BEGIN + b"\n" + lines + END) == "ok"  # no armor header lines
    assert verdict(BEGIN + lines + END) == "ok"  # not even the empty line
    assert verdict(BEGIN + b"Version: 1\r\nComment: x: y\r\n\r\n" + lines.replace(b"\n", b"\r\n") + END) == "ok"
    assert verdict(BEGIN + b"\n" + base64.b64encode(binary) + b"\n" + END) == "ok"  # one long line
    assert verdict(b"-----BEGIN PGP MESSAGE----- x\n\n" + lines + END)[0] == HEADER


@pytest.mark.parametrize("body", [
    SKESK + seipd(PLAIN),
    packet(10, b"PGP") + PKESK + PKESK + SKESK + seipd(PLAIN),
    PKESK + seipd(PLAIN) + packet(21, bytes(32)) + packet(21, b""),
    PKESK + packet(20, b"\x01" + PLAIN),  # AEAD
    PKESK + packet(18, b"\x02" + PLAIN),  # SEIPD v2
    packet(1, b"\x06" + bytes(40)) + packet(3, b"\x05" + bytes(40)) + packet(3, b"\x06" + bytes(40)) + seipd(PLAIN),
    packet(9, PLAIN),  # SED, no session key packet
    b"\x8c\x0d\x04\x09\x03\x02" + bytes(8) + b"\xff" + b"\xa5\x01\x00" + bytes(256),  # old format, 2-octet length
    PKESK + bytes([0xD2, 0xC0, 0x10]) + b"\x01" + bytes(207),  # 2-octet new-format length
    PKESK + partial_packet(18, b"\x01" + os.urandom(100_000), 13) + packet(21, b"x"),
    PKESK + partial_packet(18, b"\x01" + os.urandom(100_000), 9),
    pgp_message(b""),
    pgp_message(PLAIN),
])
def test_accepted_structures(body):
    assert verdict(body) == "ok"
    assert verdict(body, random_sizes(1, 40)) == "ok"
    assert verdict(armor(body)) == "ok"
    assert verdict(armor(body, crc=False), random_sizes(2, 40)) == "ok"


def test_the_test_support_message():
    for size in (0, 1, 100, 5000):
        assert len(pgp_message(b"x" * size)) == size + PGP_OVERHEAD
        assert verdict(pgp_message(b"x" * size)) == "ok"
    assert verdict(pgp_message(b"x" * 1000)[:-100]) == (FOOTER, "body ends inside a packet (tag 18)")


# --- packets without data are bounded (docs/security.md#the-cost-of-a-body) --------------------------------------

MARKER_PACKET, PADDING_PACKET = packet(10, b"PGP"), b"\xd5\x00"


@pytest.mark.parametrize("build, bound, message, what", [
    (lambda n: MARKER_PACKET * n + PKESK + seipd(PLAIN), 4, HEADER, "marker"),
    (lambda n: PKESK * n + seipd(PLAIN), 1000, FOOTER, "session key"),
    (lambda n: SKESK * n + seipd(PLAIN), 1000, FOOTER, "session key"),
    (lambda n: PKESK + seipd(PLAIN) + PADDING_PACKET * n, 16, FOOTER, "padding"),
])
def test_packets_without_data_are_bounded(build, bound, message, what):
    assert verdict(build(bound)) == "ok"
    assert verdict(armor(build(bound))) == "ok"
    reason = f"more than {bound} {what} packets; real OpenPGP messages have fewer"
    for body in (build(bound + 1), build(100_000)):
        refused = verdict(body, random_sizes(5, 5000))
        assert refused == (f"{message} ({reason})", reason)  # the client is told why
        armored = verdict(armor(body))
        assert armored == (f"{FOOTER} ({reason})", reason)  # after the BEGIN line every fault is a footer fault


def test_a_flood_is_refused_at_the_first_packet_past_the_bound():
    check = MessageCheck()
    flood = PKESK + seipd(PLAIN) + PADDING_PACKET * 4_000_000
    with pytest.raises(BadRequest):
        check.feed(flood)
    # the walk stopped right there: the refusal names the 17th padding packet, not the end of the body
    assert check._walk._counts[21] == 17


def test_armor_header_lines_are_bounded():
    lines = base64.encodebytes(PKESK + seipd(PLAIN))
    headers = b"".join(b"Comment: %d\n" % i for i in range(64))
    assert verdict(BEGIN + headers + b"\n" + lines + END) == "ok"
    refused = verdict(BEGIN + headers + b"Comment: one more\n\n" + lines + END)
    reason = "more than 64 armor header lines; real OpenPGP messages have fewer"
    assert refused == (f"{FOOTER} ({reason})", reason)


def test_partial_lengths_of_every_size_however_split():
    """The walk hops over chains of partial lengths; chunk sizes from 512 octets to 64 KiB, mixed, and splits that
    fall on the length octets themselves."""
    rng = random.Random(3)
    payload = b"\x01" + os.urandom(400_000)
    out, position = bytes([0xD2]), 0
    while len(payload) - position > 1 << 16:
        power = rng.randrange(9, 17)
        out += bytes([0xE0 | power]) + payload[position:position + (1 << power)]
        position += 1 << power
    rest = payload[position:]
    body = PKESK + out + b"\xff" + len(rest).to_bytes(4, "big") + rest
    assert verdict(body) == "ok"
    for seed in range(5):
        assert verdict(body, random_sizes(seed, 3000)) == "ok"
        assert verdict(body[:-1], random_sizes(seed, 3000))[0] == FOOTER
    assert verdict(body, iter(lambda: 513, 0)) == "ok"
    assert verdict(body, iter(lambda: 1, 0)) == "ok"
