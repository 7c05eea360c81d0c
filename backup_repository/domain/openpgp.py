"""A streaming, structural check that an upload is an encrypted OpenPGP message (RFC 9580 §4.2, §6, §10.3).

The server never decrypts anything, but it refuses bodies that cannot be an encrypted message: it walks the
packet framing of the whole stream. A message is: Marker packets (optional), then session-key packets (PKESK,
SKESK), then exactly one encrypted-data packet (SED, SEIPD, AEAD), then only Padding packets, ending exactly at
the end of the body. ASCII armor is decoded on the fly (base64 in bulk with pybase64's SIMD decoder, CRC-24 with
anycrc's word-wise C code) and the decoded bytes take the same walk.

Cost: the encrypted-data body, i.e. nearly all of the bytes, is skipped by counting (one subtraction per chunk,
one short hop per partial body length); only packet headers and version bytes are looked at one by one, and the
packets that carry no data (Marker, Padding, session keys) are bounded in number by what real encoders write, so
that no body costs more Python steps than a real message of its size (docs/security.md#the-cost-of-a-body).
Memory is O(1): a few header bytes, or for armor fewer than 4 pending base64 characters and a bounded header/tail
buffer.
"""

import binascii
import re

import anycrc
import pybase64

from backup_repository.domain.errors import BadRequest

STREAM_ERROR = "cannot upload version. cannot upload file, cannot copy stream, error: "
NO_GPG_HEADER = "first chunk of uploaded data does not contain a valid GPG header"
NO_GPG_FOOTER = "end of stream does not contain a valid GPG footer, suspecting a data corruption"
#: The reason (domain/errors.DomainError.reason) of every refusal of this module.
NOT_GPG = "not_gpg"

NAMES = {0: "reserved", 1: "public-key encrypted session key", 2: "signature", 3: "symmetric-key encrypted session key",
         4: "one-pass signature", 5: "secret key", 6: "public key", 7: "secret subkey", 8: "compressed data",
         9: "symmetrically encrypted data", 10: "marker", 11: "literal data", 12: "trust", 13: "user ID",
         14: "public subkey", 17: "user attribute", 18: "integrity-protected encrypted data", 19: "MDC",
         20: "AEAD encrypted data", 21: "padding"}
#: Session-key packets: tag -> (smallest and largest sane body, versions of the first body byte). The minimum is
#: the fixed fields plus 2 octets of key material (PKESK v3: version, 8-octet key ID, algorithm; SKESK v4:
#: version, cipher, simple S2K); the maximum is far above any real key (post-quantum ones are under 2 KiB).
SESSION_KEYS = {1: (12, 65536, {3, 6}), 3: (4, 65536, {4, 5, 6})}
#: Encrypted-data packets: tag -> versions of the first body byte (none: SED has no version byte).
ENCRYPTED_DATA: dict[int, set[int]] = {9: set(), 18: {1, 2}, 20: {1}}
MARKER, PADDING = 10, 21
#: How many packets that carry no data a message may hold (docs/security.md#the-cost-of-a-body). Real encoders
#: write at most one Marker (PGP 5 did; GnuPG, Sequoia and OpenPGP.js write none), one session-key packet per
#: recipient and passphrase, and at most one Padding packet (RFC 9580 §5.14). Each costs a few Python steps, so
#: beyond these bounds a body is refused at once instead of being walked packet by packet.
MAX_MARKERS, MAX_SESSION_KEYS, MAX_PADDING = 4, 1000, 16
#: What each bound counts (session-key packets of both tags count together) -> (bound, name in the refusal).
WITHOUT_DATA = {MARKER: (MAX_MARKERS, "marker"), PADDING: (MAX_PADDING, "padding"),
                "keys": (MAX_SESSION_KEYS, "session key")}
DEFINITE, PARTIAL, TO_END = "definite", "partial", "indeterminate"
#: Where the walk is: before the encrypted data (markers allowed until the first session key), in it, after it.
START, KEYS, DATA, AFTER = range(4)
#: What the walk does with the next byte: collect a packet header, collect a partial-body length, collect the
#: first body bytes (version, marker text), or skip body bytes.
HEADER, LENGTH, PREFIX, BODY = range(4)


def refusal(message: str, detail: str) -> BadRequest:
    """The client sees ``message``; ``detail`` says exactly what was wrong, for the server log."""
    error = BadRequest(STREAM_ERROR + message, reason=NOT_GPG)
    error.detail = detail
    return error


def new_length(buf, i: int):
    """(length, kind) of a new-format length starting at ``buf[i]``; None while its octets are incomplete."""
    octet = buf[i]
    if octet < 192:
        return octet, DEFINITE
    if octet < 224:
        return (((octet - 192) << 8) + buf[i + 1] + 192, DEFINITE) if len(buf) > i + 1 else None
    if octet == 255:
        return (int.from_bytes(buf[i + 1:i + 5], "big"), DEFINITE) if len(buf) > i + 4 else None
    return 1 << (octet & 0x1F), PARTIAL


def packet_header(buf):
    """(tag, length, kind) of the packet header in ``buf`` (old or new format), None while it is incomplete."""
    first = buf[0]
    if first & 0x40:
        length = new_length(buf, 1) if len(buf) > 1 else None
        return None if length is None else (first & 0x3F, *length)
    tag, size = (first >> 2) & 0x0F, first & 0x03
    if size == 3:
        return tag, 0, TO_END
    size = 1 << size  # 1, 2 or 4 octets
    return (tag, int.from_bytes(buf[1:1 + size], "big"), DEFINITE) if len(buf) > size else None


class PacketWalk:
    """Follows the packet framing of a binary message; see the module docstring for what is accepted."""

    def __init__(self):
        self._state, self._phase = HEADER, START
        self._buf = bytearray()  # the header, length or body prefix being collected
        self._skip = 0  # octets left in the current body (or partial body chunk)
        self._kind = DEFINITE  # the current body's length kind
        self._tag = 0
        self._counts = dict.fromkeys(WITHOUT_DATA, 0)
        # The message has a valid start (binary: the first packet that is not a marker, with its version; armor:
        # the BEGIN line): from then on every fault is a "footer" fault.
        self.judged = False

    def fail(self, detail: str, shown: bool = False, header: bool = False):
        """Refuse the body; ``shown``: the client is told ``detail`` too (a bound of docs/security.md, not a fault
        of the data that the exact messages of the API already name); ``header``: with the GPG header message even
        after the start was judged."""
        message = NO_GPG_FOOTER if self.judged and not header else NO_GPG_HEADER
        raise refusal(f"{message} ({detail})" if shown else message, detail)

    def feed(self, data):
        pos, end = 0, len(data)
        while pos < end:
            if self._state == BODY:
                if self._skip > end - pos:
                    self._skip -= end - pos
                    return
                pos += self._skip
                self._skip = 0
                if self._kind == PARTIAL:
                    pos = self._hop_partial_lengths(data, pos, end)
                    if self._skip:
                        return
                self._body_ended()
                continue
            self._buf.append(data[pos])
            pos += 1
            if self._state == HEADER:
                self._header_byte()
            elif self._state == LENGTH:
                length = new_length(self._buf, 0)
                if length is not None:
                    self._body(*length)
            else:
                self._skip -= 1
                self._prefix_byte()

    def _hop_partial_lengths(self, data, pos: int, end: int) -> int:
        """From a partial chunk's end, skip the following chunks that have one-octet lengths of 512 octets or more
        (all of gpg's), a few bytecodes each; returns where the walk goes on one octet at a time. When a chunk runs
        past ``end``, ``self._skip`` holds what is left of it."""
        while pos < end:
            octet = data[pos]
            if octet < 233 or octet == 255:  # 224 + 9: 2**9 = 512 octets; others take the careful path
                return pos
            pos += 1 + (1 << (octet & 0x1F))
            if pos > end:
                self._skip = pos - end
                return end
        return pos

    def finish(self):
        if self._state == HEADER and not self._buf and self._phase == AFTER:
            return
        if self._state == HEADER and not self._buf and self._phase != DATA:
            self.fail("no encrypted data packet")
        self.fail(f"body ends inside a packet (tag {self._tag})")

    def _header_byte(self):
        buf = self._buf
        if len(buf) == 1:  # judge the tag at once, before the length arrives
            if not buf[0] & 0x80:
                self.fail(f"first octet of a packet header is 0x{buf[0]:02x}: bit 7 is clear, this is no packet")
            self._tag = buf[0] & 0x3F if buf[0] & 0x40 else (buf[0] >> 2) & 0x0F
            self._check_tag(self._tag)
        header = packet_header(buf)
        if header is None:
            return
        tag, length, kind = header
        if kind == PARTIAL and tag not in ENCRYPTED_DATA:
            self.fail(f"partial body length on packet tag {tag} ({NAMES.get(tag)})")
        if kind == TO_END:  # RFC 9580 §4.2.2.2 deprecates it; no current encoder writes it (docs/security.md)
            self.fail(f"indeterminate length on packet tag {tag} ({NAMES.get(tag)})", header=True)
        if tag in SESSION_KEYS and not SESSION_KEYS[tag][0] <= length <= SESSION_KEYS[tag][1]:
            self.fail(f"packet tag {tag} ({NAMES[tag]}) of {length} octets")
        if tag == MARKER and length != 3:
            self.fail(f"marker packet of {length} octets")
        self._count(tag)
        if tag in ENCRYPTED_DATA:
            self._phase = DATA
        elif tag in SESSION_KEYS:
            self._phase = KEYS
        self._body(length, kind)

    def _count(self, tag: int):
        """Packets without data are bounded (MAX_MARKERS, MAX_SESSION_KEYS, MAX_PADDING)."""
        key = "keys" if tag in SESSION_KEYS else tag
        if key not in WITHOUT_DATA:
            return
        self._counts[key] += 1
        bound, what = WITHOUT_DATA[key]
        if self._counts[key] > bound:
            self.fail(f"more than {bound} {what} packets; real OpenPGP messages have fewer", shown=True)

    def _check_tag(self, tag: int):
        name = f"packet tag {tag} ({NAMES.get(tag, 'unknown')})"
        if self._phase == AFTER:
            if tag in ENCRYPTED_DATA:
                self.fail(f"{name}: a second encrypted data packet")
            if tag != PADDING:
                self.fail(f"{name} after the encrypted data packet")
        elif tag == MARKER and self._phase != START:
            self.fail("marker packet after a session key packet")
        elif tag not in SESSION_KEYS and tag not in ENCRYPTED_DATA and tag != MARKER:
            self.fail(f"{name} where an encrypted session key or encrypted data was expected")

    def _body(self, length: int, kind: str):
        """A packet header or partial length is complete: ``length`` body octets follow."""
        first_chunk = self._state == HEADER
        # RFC 9580 requires only the first partial chunk to hold 512 octets or more; later ones may be as small as
        # 1 octet. Each costs a Python loop turn (~4 MB/s at 1 octet: an uploader could stall the event loop), and
        # GnuPG, Sequoia and OpenPGP.js never write a non-final chunk under 512, so none may be smaller here
        # (docs/api.md#upload).
        if kind == PARTIAL and length < 512:
            self.fail(f"partial body length of {length} octets; at least 512 are required")
        self._buf.clear()
        self._kind, self._skip = kind, length
        self._state = BODY
        if first_chunk and (self._tag == MARKER or ENCRYPTED_DATA.get(self._tag) or self._tag in SESSION_KEYS):
            self._state = PREFIX  # the version byte (or the marker's "PGP") comes first
            if self._skip < 1:
                self.fail(f"packet tag {self._tag} ({NAMES[self._tag]}) too short for its version octet")
        elif self._tag in ENCRYPTED_DATA and first_chunk:
            self.judged = True  # SED: no version byte to look at
        if self._state == BODY and not self._skip:
            self._body_ended()

    def _prefix_byte(self):
        tag, buf = self._tag, self._buf
        if tag == MARKER:
            if buf != b"PGP"[:len(buf)]:
                self.fail("marker packet does not say PGP")
            if len(buf) < 3:
                return
        else:
            versions = SESSION_KEYS[tag][2] if tag in SESSION_KEYS else ENCRYPTED_DATA[tag]
            if buf[0] not in versions:
                self.fail(f"packet tag {tag} ({NAMES[tag]}) of unknown version {buf[0]}")
            self.judged = True
        buf.clear()
        self._state = BODY
        if not self._skip:
            self._body_ended()

    def _body_ended(self):
        if self._kind == PARTIAL:
            self._state = LENGTH
            return
        self._state = HEADER
        if self._phase == DATA:
            self._phase = AFTER


_CRC24 = anycrc.Model("CRC24-OPENPGP")  # RFC 9580 §6.1: generator 0x864CFB, initial value 0xB704CE


def crc24(data, crc: int = 0xB704CE) -> int:
    """The running CRC-24 of armor: ``crc24(b, crc24(a)) == crc24(a + b)``."""
    return _CRC24.calc(data, crc)
WHITESPACE = b" \t\r\n"
BLANKS = (0x20, 0x09)
BEGIN, END = b"-----BEGIN PGP MESSAGE-----", b"-----END PGP MESSAGE-----"
ARMOR_HEADER_LINE = re.compile(rb"[!-9;-~]+: ?[^\r\n]*")
CRC_LINE = re.compile(rb"=[A-Za-z0-9+/]{4}")
NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
#: Bounds on what is held between chunks: one armor line, the armor headers, the tail (padding, CRC, END line).
MAX_LINE, MAX_HEADERS, MAX_TAIL = 1024, 64 << 10, 4096
#: Armor header lines ("Key: Value"): GnuPG writes at most a few (Version, Comment, Charset).
MAX_HEADER_LINES = 64
LEAD, HEADERS, BASE64, TAIL, DONE = range(5)


class ArmorDecoder:
    """Decodes an ASCII-armored message as it streams and passes the bytes on to a PacketWalk.

    The base64 lines are not split in Python: a chunk is searched for the first "=" (padding or CRC line) or
    "-" (END line), everything before it is whitespace-stripped and decoded in bulk, the rest is the tail.
    """

    def __init__(self, walk: PacketWalk):
        self._walk = walk
        self._state = LEAD
        self._buf = bytearray()  # LEAD, HEADERS: the current line(s); TAIL: the tail so far
        self._pending = b""  # base64 characters short of a 4-character group
        self._line_start = True  # the decoded base64 ended at the end of a line
        self._crc = 0xB704CE
        self._headers = 0  # bytes of armor header lines
        self._header_lines = 0

    def feed(self, text):
        if self._state == BASE64:
            return self._base64(text)
        if self._state == DONE:
            return self._after_end(text)
        self._buf += text
        if self._state == LEAD:
            self._lead()
        if self._state == HEADERS:
            self._armor_headers()  # which goes on to the base64 and the tail, when they are in
        elif self._state == TAIL:
            self._tail()

    def finish(self):
        if self._state == LEAD:
            raise refusal(NO_GPG_HEADER, "no complete armor header line")
        if self._state != DONE:
            self._walk.fail("no END line")

    def _lead(self):
        del self._buf[:len(self._buf) - len(self._buf.lstrip(WHITESPACE))]
        line = self._buf[:self._buf.find(b"\n") + 1 or len(self._buf)]
        if not line.startswith(BEGIN[:len(line)]):
            raise refusal(NO_GPG_HEADER, "neither an OpenPGP packet nor an armor header line")
        if line.endswith(b"\n"):
            if line[len(BEGIN):].strip(WHITESPACE):
                raise refusal(NO_GPG_HEADER, f"bad armor header line {bytes(line[:80])!r}")
            del self._buf[:len(line)]
            self._state = HEADERS
            self._walk.judged = True  # RFC 9580 §6.2 calls this line the Armor Header Line
        elif len(self._buf) > MAX_LINE:
            raise refusal(NO_GPG_HEADER, "armor header line too long")

    def _armor_headers(self):
        """Key: Value lines up to an empty line; a line that is neither starts the base64 (no empty line)."""
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    self._walk.fail("armor header too long")
                return
            line = bytes(self._buf[:end]).strip(WHITESPACE)
            if line and ARMOR_HEADER_LINE.fullmatch(line):
                self._headers += end + 1
                self._header_lines += 1
                if self._headers > MAX_HEADERS:
                    self._walk.fail("armor headers too long")
                if self._header_lines > MAX_HEADER_LINES:
                    self._walk.fail(f"more than {MAX_HEADER_LINES} armor header lines; real OpenPGP messages have "
                                    "fewer", shown=True)
                del self._buf[:end + 1]
                continue
            if not line:
                del self._buf[:end + 1]
            rest, self._buf = bytes(self._buf), bytearray()
            self._state = BASE64
            return self._base64(rest)

    def _base64(self, text):
        cut = text.find(b"=")
        dash = text.find(b"-", 0, len(text) if cut < 0 else cut)
        cut = dash if dash >= 0 else cut
        bulk = text if cut < 0 else text[:cut]
        if bulk:
            last = bulk[-1]
            if last in BLANKS:  # rare: blanks at the end of the chunk; strip them to see what ends it
                trimmed = bulk.rstrip(b" \t")
                last = trimmed[-1] if trimmed else None
            if last is not None:
                self._line_start = last == 0x0A
            self._decode_text(bulk)
        if cut >= 0:
            self._state = TAIL
            self._buf += text[cut:]
            self._tail()

    def _decode_text(self, bulk):
        """Decode base64 lines: line breaks (and any blanks) removed with memchr-speed replace, then whole
        4-character groups decoded at once; fewer than 4 characters wait for the next chunk."""
        compact = bulk.replace(b"\n", b"")
        for blank in (b"\r", b" ", b"\t"):
            if blank in compact:
                compact = compact.replace(blank, b"")
        start = 0
        if self._pending:  # complete the group the previous chunk began
            start = min(4 - len(self._pending), len(compact))
            group = self._pending + compact[:start]
            if len(group) < 4:
                self._pending = group
                return
            self._decode(group)
        whole = start + ((len(compact) - start) & ~3)
        self._pending = compact[whole:]
        if whole > start:
            self._decode(memoryview(compact)[start:whole])

    def _decode(self, groups):
        try:
            data = pybase64.b64decode(groups, validate=True)
        except binascii.Error:
            bad = NOT_BASE64.search(groups)
            good = (bad.start() if bad else 0) & ~3
            if good:
                self._decode(groups[:good])  # so that the detail names the first fault
            self._walk.fail(f"invalid base64 character {bytes(bad.group()) if bad else b''!r}")
        self._crc = crc24(data, self._crc)
        self._walk.feed(data)

    def _tail(self):
        """Padding, CRC line and END line: parsed once the END line is in (they fit in MAX_TAIL)."""
        end = self._buf.find(END)
        if end < 0:
            if len(self._buf) > MAX_TAIL:
                self._walk.fail("no END line after the base64 data")
            return
        before, after = bytes(self._buf[:end]), bytes(self._buf[end + len(END):])
        self._buf = bytearray()
        if not self._line_start:  # the tail starts on the last base64 line: its padding
            padding, newline, before = before.partition(b"\n")
            padding = padding.strip(WHITESPACE)
            if not newline or padding not in (b"=", b"==") or len(self._pending) + len(padding) != 4:
                self._walk.fail(f"bad end of the base64 data: {padding[:20]!r}")
            self._decode(self._pending + padding)
        elif self._pending:
            self._walk.fail("base64 data ends inside a 4-character group")
        lines = before.split(b"\n")
        if lines[-1].strip(b" \t"):
            self._walk.fail("the END line does not start a line")
        crc = None
        for line in map(bytes.strip, lines[:-1]):
            if crc is None and CRC_LINE.fullmatch(line):
                crc = int.from_bytes(binascii.a2b_base64(line[1:]), "big")
            elif line:
                self._walk.fail(f"unexpected line before the END line: {line[:20]!r}")
        self._walk.finish()
        if crc is not None and crc != self._crc:
            self._walk.fail("CRC-24 mismatch")
        self._state = DONE
        self._after_end(after)

    def _after_end(self, text):
        junk = len(text.translate(None, WHITESPACE))
        if junk:
            self._walk.fail(f"{junk} non-whitespace bytes after the END line")


class MessageCheck:
    """feed(chunk) for each body chunk (bytes, bytearray or memoryview, of any size); finish() at the end.

    Raises BadRequest(STREAM_ERROR + NO_GPG_HEADER) when the body does not start like an encrypted message (binary:
    the first packet that is not a marker, up to its version octet; armor: the BEGIN line), BadRequest(STREAM_ERROR
    + NO_GPG_FOOTER) for any later fault, the moment it is seen; the error's ``detail`` says exactly what was wrong.
    A first octet with bit 7 set means binary, anything else must be armor.
    """

    def __init__(self):
        self._walk = PacketWalk()
        self._sink = None

    def feed(self, chunk):
        if not len(chunk):
            return
        if self._sink is None:
            self._sink = self._walk if chunk[0] & 0x80 else ArmorDecoder(self._walk)
        if self._sink is not self._walk and isinstance(chunk, memoryview):
            chunk = chunk.tobytes()  # armor needs bytes methods (find, translate)
        self._sink.feed(chunk)

    def finish(self):
        if self._sink is None:
            raise refusal(NO_GPG_HEADER, "empty body")
        self._sink.finish()
