"""The rules an upload body must pass while it streams (docs/api.md#upload): the size budget, counted on the fly;
for a form, only the ``file`` part is the backup and everything else is bounded; the OpenPGP structure; not empty.

Plain Python over byte chunks: ``UploadBody.accept(chunk)`` returns the pieces of the file to store and raises a
DomainError (400, 413) the moment a rule is broken; ``finish()`` runs the checks that need the whole body.
"""

from collections import deque
from collections.abc import Sequence
from typing import Optional

from backup_repository.domain.errors import BadRequest, PayloadTooLarge
from backup_repository.domain.multipart import MultipartFile
from backup_repository.domain.openpgp import STREAM_ERROR, MessageCheck

EMPTY = "sent empty data"
#: What a multipart body may carry besides its ``file`` part (other fields, part headers, delimiters, preamble,
#: epilogue). The file is counted exactly against the budget; this bounds everything else, whatever the budget.
FORM_OVERHEAD = 64 << 10


def too_large(received: int, allowed: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{STREAM_ERROR}filesize reached allowed limit. Uploaded {received} bytes, "
        f"allowed to upload only {allowed} bytes"
    )


def refuse_declared_length(declared: Optional[int], content_type: str, allowed: int, over_budget=None):
    """A declared Content-Length above the budget is refused before a byte is read (a form may add FORM_OVERHEAD
    of fields and delimiters around its file). ``over_budget(size)`` may name a more precise refusal than 413."""
    if declared is None:
        return
    slack = FORM_OVERHEAD if content_type.lower().startswith("multipart/") else 0
    if declared - slack > allowed:
        raise (over_budget and over_budget(declared - slack)) or too_large(declared, allowed)


class UploadBody:
    """Counts and checks one upload body. ``over_budget(received)``, when given, may return the error for a file
    above ``allowed_bytes`` instead of 413 (a collection's minimumRetention in the way)."""

    def __init__(self, allowed_bytes: int, content_type: str = "", over_budget=None):
        self.allowed = allowed_bytes
        self._over_budget = over_budget
        self.received = 0  # bytes of the file
        self.body_received = 0  # bytes of the request body (more than the file for a multipart body)
        self._form = MultipartFile.for_content_type(content_type)
        self._message = MessageCheck()

    @staticmethod
    def check_content_type(content_type: str):
        """Raise the error a body of this Content-Type would get at once (a form without a boundary)."""
        MultipartFile.for_content_type(content_type)

    def accept(self, data) -> list:
        """The pieces of the file in the next body chunk, checked and counted."""
        pieces: Sequence = (data,)
        if self._form is not None:
            self.body_received += len(data)
            pieces = self._form.feed(data)
        accepted = []
        for piece in pieces:
            if not piece:
                continue
            self.received += len(piece)
            if self.received > self.allowed:
                raise (self._over_budget and self._over_budget(self.received)) or too_large(self.received,
                                                                                            self.allowed)
            self._message.feed(piece)
            accepted.append(piece)
        if self._form is not None and self.body_received - self.received > FORM_OVERHEAD:
            raise too_large(self.body_received, self.allowed + FORM_OVERHEAD)
        return accepted

    def finish(self):
        """The body is complete: the checks that need all of it."""
        if self._form is not None:
            self._form.finish()
        if self.received == 0:
            raise BadRequest(STREAM_ERROR + EMPTY)
        self._message.finish()


class MinimumRate:
    """The minimum-rate rule of an upload (docs/security.md#slow-uploads): over the last ``window`` seconds of the
    client's time, at least ``rate`` octets a second on average must have arrived. The client's time leaves out the
    time the store made it wait (back-pressure never counts against the client). ``rate`` 0: no rule. Times are
    the caller's clock (seconds)."""

    def __init__(self, rate: float, window: float, now: float):
        self.rate = rate
        self.window = window
        self.received = 0
        self._began = now
        self._waited = 0.0
        self._waiting_since: Optional[float] = None
        self._samples = deque([(0.0, 0)])  # (client seconds, octets received then)

    def add(self, count: int):
        self.received += count

    def store_waits(self, now: float):
        if self._waiting_since is None:
            self._waiting_since = now

    def store_caught_up(self, now: float):
        if self._waiting_since is not None:
            self._waited += now - self._waiting_since
            self._waiting_since = None

    def client_time(self, now: float) -> float:
        waiting = now - self._waiting_since if self._waiting_since is not None else 0.0
        return now - self._began - self._waited - waiting

    def too_slow(self, now: float) -> Optional[float]:
        """The average rate of the last window when it is below the floor; None when it is not, while the store
        makes the client wait, and before a whole window of the client's time has passed."""
        if self.rate <= 0 or self._waiting_since is not None:
            return None
        moment = self.client_time(now)
        samples = self._samples
        samples.append((moment, self.received))
        while len(samples) > 1 and samples[1][0] <= moment - self.window:
            samples.popleft()
        start, received_then = samples[0]
        if moment - start < self.window:
            return None
        average = (self.received - received_then) / (moment - start)
        return average if average < self.rate else None
