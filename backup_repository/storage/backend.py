"""What a storage backend is: the calls ``BlobStore`` makes of it (storage/blobstore.py), as ``typing.Protocol``s.

A backend is one bucket or directory seen through blocking calls, which ``BlobStore`` runs off the event loop.
Each backend names the protocols it implements as its base classes (``class LocalBackend(OpensFiles)``), so that
the type checker (``make test``: mypy, mypy.ini) holds its methods to these signatures and refuses to build a
backend that misses one. Two capabilities are optional, for downloads sent kernel to kernel (storage/sendfile.py):
``OpensFiles`` (objects are local files, sent by sendfile) and ``RelaysAnswers`` (a GET's answer can be spliced to
the client); ``BlobStore`` asks which of them a backend has once, when it is built.

The protocols live here, beside the backends, not in services/ports.py: the store must not import the services
(.importlinter); services/ports.py re-exports ``Backend`` so that every port can be read on one page.
"""

from collections.abc import Callable, Generator, Iterable
from datetime import datetime
from typing import Optional, Protocol, runtime_checkable

from backup_repository.storage.sendfile import RelaySource

#: A piece of an object on its way to the store: a body piece as received (bytes, or a buffer handed over).
Chunk = bytes | bytearray


class Backend(Protocol):
    """The calls every backend answers; each blocks. Object names are ``{collectionId}/{filename}``
    (``.health-*``: the store's own probes)."""

    def check(self) -> None:
        """Raise when the bucket or directory cannot hold objects (the message names it); StorageConfigError when
        it is reachable but not as configured."""
        ...

    def size(self, name: str) -> Optional[int]:
        """The object's size in bytes, None when there is no such object."""
        ...

    def delete(self, name: str) -> bool:
        """Delete the object; False when there was none (or the store did not delete it)."""
        ...

    def put_bytes(self, name: str, data: bytes) -> None:
        ...

    def get_bytes(self, name: str) -> bytes:
        ...

    def read_range(self, name: str, start: int = 0, end: Optional[int] = None) -> Generator[bytes, None, None]:
        """Yield the bytes ``[start, end)`` of the object (to its end when ``end`` is None); closing the generator
        lets go of the object."""
        ...

    def write_stream(self, name: str, chunks: Iterable[Chunk], check_size: Optional[Callable[[int], object]] = None,
                     retain_until: Optional[datetime] = None) -> int:
        """Write every chunk; the object becomes visible at ``name`` only at the end, never half written. Return
        its size. ``check_size(size)`` may raise to refuse it before it becomes visible; ``retain_until``: an
        S3 Object Lock retention, where the store keeps one. On any failure nothing is left visible."""
        ...

    def objects(self) -> list[tuple[str, float]]:
        """(name, modified epoch seconds) of every object, the store's probes and temporary files left out."""
        ...

    def remove_leftovers(self, name: str, older_than: float) -> int:
        """Remove ``name`` and whatever an interrupted write of it left (temporary files, unfinished multipart
        uploads) from before ``older_than`` (epoch seconds); return how many things were removed."""
        ...

    def sweep_temporary(self, older_than: float) -> list[str]:
        """Remove the temporary upload files older than ``older_than`` anywhere in the store; return their names."""
        ...


@runtime_checkable
class OpensFiles(Backend, Protocol):
    """A backend whose objects are local files: a download is sent from the file by sendfile."""

    def open_file(self, name: str) -> int:
        """A read-only descriptor of the object's file (FileNotFoundError when there is none); the caller closes
        it."""
        ...


@runtime_checkable
class RelaysAnswers(Backend, Protocol):
    """A backend that reads objects over HTTP: a download's answer from the store can be spliced to the client."""

    def open_relay(self, name: str, start: int, end: int) -> Optional[RelaySource]:
        """The store's answer to a GET of the bytes ``[start, end)``, its headers read; None when its body cannot
        be relayed as it comes over the wire (TLS, a chunked or encoded answer)."""
        ...
