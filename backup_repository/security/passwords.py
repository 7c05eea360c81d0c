"""Argon2id password hashes in the Go server's format (docs/configuration.md#passwords).

The stored form is ``base64(PHC)`` where the PHC string keeps salt and hash in *standard* base64 with ``=``
padding, as the Go server writes them. Verification reads the algorithm, m, t, p and the key length from the
string itself, so hashes written by either server verify in both.
"""

import asyncio
import base64
import binascii
import hmac
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from argon2.low_level import Type, hash_secret_raw

MEMORY_KIB = 65536
TIME_COST = 1
PARALLELISM = 4
SALT_LENGTH = 16
KEY_LENGTH = 32
MAX_MEMORY_KIB = 1 << 20  # refuse hashes that would need more than 1 GiB to check

_TYPES = {"argon2id": Type.ID, "argon2i": Type.I, "argon2d": Type.D}
_PHC = re.compile(
    r"^\$(argon2id|argon2i|argon2d)\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/_=-]+)\$([A-Za-z0-9+/_=-]+)$"
)


class InvalidHash(ValueError):
    pass


def _b64decode(text: str) -> bytes:
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def encode_password(password: str, salt: Optional[bytes] = None) -> str:
    """Return the hash of ``password`` exactly as the Go server's ``--encode-password`` prints it."""
    salt = os.urandom(SALT_LENGTH) if salt is None else salt
    digest = hash_secret_raw(
        password.encode("utf-8"), salt, TIME_COST, MEMORY_KIB, PARALLELISM, KEY_LENGTH, Type.ID
    )
    return _format_hash(salt, digest)


def _format_hash(salt: bytes, digest: bytes) -> str:
    phc = "$argon2id$v=19$m={},t={},p={}${}${}".format(
        MEMORY_KIB, TIME_COST, PARALLELISM,
        base64.b64encode(salt).decode("ascii"), base64.b64encode(digest).decode("ascii"),
    )
    return base64.b64encode(phc.encode("ascii")).decode("ascii")


def dummy_hash() -> str:
    """A well-formed hash that no password matches (random salt and digest; nothing is hashed to make it). A login
    that names no real user is checked against it, so that the answer takes as long as for a real one."""
    return _format_hash(os.urandom(SALT_LENGTH), os.urandom(KEY_LENGTH))


def parse_hash(encoded: str):
    """Return (type, version, m, t, p, salt, digest); raise InvalidHash when the text is not such a hash."""
    text = (encoded or "").strip()
    if not text.startswith("$"):
        try:
            text = base64.b64decode(text, validate=True).decode("ascii")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise InvalidHash("not a base64-encoded argon2 hash") from None
    match = _PHC.match(text)
    if not match:
        raise InvalidHash("not an argon2 PHC string")
    kind, version, memory, time_cost, parallelism = match.group(1), *map(int, match.group(2, 3, 4, 5))
    try:
        salt, digest = _b64decode(match.group(6)), _b64decode(match.group(7))
    except (binascii.Error, ValueError):
        raise InvalidHash("salt or hash is not valid base64") from None
    if version != 19 or not (1 <= memory <= MAX_MEMORY_KIB) or time_cost < 1 or parallelism < 1 or len(digest) < 4:
        raise InvalidHash("unsupported argon2 parameters")
    return _TYPES[kind], version, memory, time_cost, parallelism, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (blocking: about 64 MiB and tens of milliseconds)."""
    kind, _, memory, time_cost, parallelism, salt, digest = parse_hash(encoded)
    candidate = hash_secret_raw(
        password.encode("utf-8"), salt, time_cost, memory, parallelism, len(digest), kind
    )
    return hmac.compare_digest(candidate, digest)


#: How much nicer than the rest of the server the password threads are: under a login flood the CPU goes to the
#: event loop first, so every other request keeps answering promptly.
PASSWORD_THREAD_NICENESS = 10


def _lower_thread_priority():
    """Linux schedules threads individually: raise this thread's nice value (always allowed)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


class Overloaded(Exception):
    """More verifications are waiting than the queue allows."""


class PasswordVerifier:
    """Runs verifications on a small dedicated thread pool, so that at most ``concurrency`` of them (each
    taking 64 MiB) run at once and the event loop is never blocked. At most ``queue`` more may wait; beyond
    that ``verify`` raises Overloaded at once, so a login flood costs neither memory nor a growing wait."""

    def __init__(self, concurrency: int = 2, queue: int = 16):
        self.concurrency = concurrency
        self.queue = queue
        self.in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2",
                                        initializer=_lower_thread_priority)
        self._dummy = dummy_hash()

    async def verify(self, password: str, encoded) -> bool:
        """False for a wrong password, a missing hash or a malformed one (the latter is logged by the caller)."""
        if self.in_flight >= self.concurrency + self.queue:
            raise Overloaded(f"{self.in_flight} password verifications are running or waiting")
        self.in_flight += 1
        try:
            return await self._verify(password, encoded)
        finally:
            self.in_flight -= 1

    async def _verify(self, password: str, encoded) -> bool:
        target = encoded or self._dummy
        loop = asyncio.get_running_loop()
        try:
            ok = await loop.run_in_executor(self._pool, verify_password, password, target)
        except InvalidHash:
            await loop.run_in_executor(self._pool, verify_password, password, self._dummy)
            raise
        return ok and encoded is not None

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
