"""The ``file`` part of a ``multipart/form-data`` upload, streamed out of the body without buffering it
(docs/api.md#upload: an upload is the raw body or the part named ``file`` of a form)."""

from email.message import Message
from typing import Optional

from backup_repository.domain.errors import BadRequest

FORM_ERROR = "cannot read file from multipart/urlencoded form: "


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
    param = message.get_param("name", header="content-disposition")
    return param if isinstance(param, str) else None
