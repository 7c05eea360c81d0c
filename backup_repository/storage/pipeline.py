"""The upload pipeline: from request-body chunks to a stored object, with every check of CONTRACT §7 on the way.

body chunks -> (multipart: the ``file`` part only) -> size budget -> GPG header/footer -> ObjectWriter (sha256,
store). Nothing here knows about HTTP frameworks: the handler feeds chunks and calls ``finish()`` or ``abort()``.
"""

from email.message import Message
from typing import Optional

from backup_repository.domain.errors import BadRequest, PayloadTooLarge

STREAM_ERROR = "cannot upload version. cannot upload file, cannot copy stream, error: "
NO_GPG_HEADER = "first chunk of uploaded data does not contain a valid GPG header"
NO_GPG_FOOTER = "end of stream does not contain a valid GPG footer, suspecting a data corruption"
EMPTY = "sent empty data"
FORM_ERROR = "cannot read file from multipart/urlencoded form: "

ARMOR_HEADER = b"-----BEGIN PGP MESSAGE"
ARMOR_FOOTER = b"-----END PGP MESSAGE-----"
#: OpenPGP packets that may open an encrypted message, with the versions their first body byte may have:
#: public-key and symmetric-key encrypted session keys, symmetrically encrypted data (no version byte),
#: integrity-protected data and AEAD-encrypted data (RFC 4880, RFC 9580).
ENCRYPTED_MESSAGE_VERSIONS = {1: {3, 6}, 3: {4, 5, 6}, 9: None, 18: {1, 2}, 20: {1}}
WHITESPACE = b" \t\r\n"


def too_large(received: int, allowed: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{STREAM_ERROR}filesize reached allowed limit. Uploaded {received} bytes, "
        f"allowed to upload only {allowed} bytes"
    )


class UploadPipeline:
    """Checks, counts and stores one upload body."""

    def __init__(self, writer, allowed_bytes: int, content_type: str = ""):
        self.writer = writer
        self.allowed = allowed_bytes
        self.received = 0
        self._form = MultipartFile.for_content_type(content_type)
        self._gpg = GpgCheck()

    def feed(self, data):
        """Take the next body chunk; returns a future to await when the store is behind, else None.

        Raises a DomainError (400, 413) the moment the data breaks a rule.
        """
        pieces = self._form.feed(data) if self._form is not None else (data,)
        waiting = None
        for piece in pieces:
            if not piece:
                continue
            self.received += len(piece)
            if self.received > self.allowed:
                raise too_large(self.received, self.allowed)
            self._gpg.feed(piece)
            waiting = self.writer.write(piece) or waiting
        return waiting

    async def finish(self):
        """The body is complete: run the final checks and complete the object; returns the StoredObject."""
        if self._form is not None:
            self._form.finish()
        if self.received == 0:
            raise BadRequest(STREAM_ERROR + EMPTY)
        self._gpg.finish()
        return await self.writer.close()

    async def abort(self):
        await self.writer.abort()


class GpgCheck:
    """An encrypted OpenPGP message: ASCII-armored (header and footer) or binary (the first packet's tag)."""

    def __init__(self):
        self._head = b""
        self._decided = False
        self._armored = False
        self._tail = b""

    def feed(self, data):
        if not self._decided:
            self._head += bytes(data[: 64 - len(self._head)]) if len(self._head) < 64 else b""
            self._decide(final=False)
        if self._armored or not self._decided:
            self._tail = (self._tail + bytes(data[-64:]))[-64:]

    def _decide(self, final: bool):
        head = self._head
        if not head:
            if final:
                raise BadRequest(STREAM_ERROR + NO_GPG_HEADER)
            return
        if head[0] & 0x80:
            verdict = binary_message_start(head)
            if verdict is None and not final:
                return  # not enough bytes yet to tell
            if not verdict:
                raise BadRequest(STREAM_ERROR + NO_GPG_HEADER)
            self._decided = True
            return
        text = head.lstrip(WHITESPACE)
        if len(text) < len(ARMOR_HEADER) and not final and len(head) < 64:
            return  # not enough bytes yet to tell
        if not text.startswith(ARMOR_HEADER):
            raise BadRequest(STREAM_ERROR + NO_GPG_HEADER)
        self._decided = self._armored = True

    def finish(self):
        if not self._decided:
            self._decide(final=True)
        if self._armored and not self._tail.rstrip(WHITESPACE).endswith(ARMOR_FOOTER):
            raise BadRequest(STREAM_ERROR + NO_GPG_FOOTER)


def binary_message_start(head: bytes):
    """True when ``head`` opens with an encryption packet of a known version, False when it cannot, None when
    more bytes are needed to tell."""
    first = head[0]
    tag = packet_tag(first)
    if tag not in ENCRYPTED_MESSAGE_VERSIONS:
        return False
    if first & 0x40:  # new format: 1, 2 or 5 length octets, or a partial length (data packets only)
        if len(head) < 2:
            return None
        octet = head[1]
        length_octets = 1 if octet < 192 else 2 if octet < 224 else 5 if octet == 255 else 1
    else:  # old format: the length type is in the two low bits; 3 means "until the end"
        length_octets = (1, 2, 4, 0)[first & 0x03]
    versions = ENCRYPTED_MESSAGE_VERSIONS[tag]
    if versions is None:
        return True
    position = 1 + length_octets
    if len(head) <= position:
        return None
    return head[position] in versions


def packet_tag(first_byte: int) -> int:
    """The packet tag of an OpenPGP packet header byte: new format keeps 6 bits, the old format 4."""
    if first_byte & 0x40:
        return first_byte & 0x3F
    return (first_byte >> 2) & 0x0F


class MultipartFile:
    """Streams the content of the ``file`` part out of a ``multipart/form-data`` body, without buffering it.

    Other parts are read and dropped. Only the delimiter's length worth of bytes is held back between chunks.
    """

    PREAMBLE, DELIMITER, HEADERS, BODY, DONE = range(5)
    MAX_HEADERS = 16 << 10
    FIELD = "file"

    def __init__(self, boundary: bytes):
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")  # the first delimiter has no CRLF before it
        self._state = self.PREAMBLE
        self._in_file = False
        self._found = False

    @classmethod
    def for_content_type(cls, content_type: str) -> Optional["MultipartFile"]:
        """A parser for multipart/form-data bodies; None for any other body (stored as it is)."""
        message = Message()
        message["content-type"] = content_type or "application/octet-stream"
        if message.get_content_type() != "multipart/form-data":
            return None
        boundary = message.get_param("boundary")
        if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
            raise BadRequest(FORM_ERROR + "the Content-Type has no boundary")
        return cls(boundary.encode("latin-1"))

    def feed(self, data) -> list:
        self._buffer += data
        out = []
        while True:
            if self._state == self.BODY:
                index = self._buffer.find(self._delimiter)
                if index < 0:
                    keep = len(self._delimiter) - 1
                    if len(self._buffer) > keep:
                        cut = len(self._buffer) - keep
                        if self._in_file:
                            out.append(bytes(self._buffer[:cut]))
                        del self._buffer[:cut]
                    return out
                if self._in_file:
                    out.append(bytes(self._buffer[:index]))
                    self._in_file = False
                del self._buffer[: index + len(self._delimiter)]
                self._state = self.DELIMITER
            elif self._state == self.PREAMBLE:
                index = self._buffer.find(self._delimiter)
                if index < 0:
                    del self._buffer[: max(0, len(self._buffer) - len(self._delimiter) + 1)]
                    return out
                del self._buffer[: index + len(self._delimiter)]
                self._state = self.DELIMITER
            elif self._state == self.DELIMITER:
                if len(self._buffer) < 2:
                    return out
                if self._buffer[:2] == b"--":
                    self._state = self.DONE
                    continue
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 256:
                        raise BadRequest(FORM_ERROR + "malformed multipart delimiter line")
                    return out
                del self._buffer[: end + 2]
                self._state = self.HEADERS
            elif self._state == self.HEADERS:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if self._buffer.startswith(b"\r\n"):  # a part without any header line
                        end = -2
                    elif len(self._buffer) > self.MAX_HEADERS:
                        raise BadRequest(FORM_ERROR + "multipart part headers are too long")
                    else:
                        return out
                headers = bytes(self._buffer[: max(end, 0)])
                del self._buffer[: end + 4]
                self._in_file = not self._found and _part_name(headers) == self.FIELD
                self._found = self._found or self._in_file
                self._state = self.BODY
            else:  # DONE: the epilogue is ignored
                self._buffer.clear()
                return out

    def finish(self):
        if not self._found:
            raise BadRequest(FORM_ERROR + 'the form has no part named "file"')
        if self._state not in (self.DONE, self.DELIMITER):
            raise BadRequest(FORM_ERROR + "the multipart body ended before its closing delimiter")


def _part_name(headers: bytes) -> Optional[str]:
    message = Message()
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            message[name.strip()] = value.strip()
    name = message.get_param("name", header="content-disposition")
    return name if isinstance(name, str) else None
