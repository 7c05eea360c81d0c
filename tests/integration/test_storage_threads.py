"""The object store used from many threads at once (docs/scaling.md): each storage thread has its own libcloud
driver and connection, so concurrent calls get their own answers. With one driver shared by every thread, this
test saw empty bodies, StreamConsumedError, wrong sizes and refused signatures within seconds on MinIO."""

import os
import sys
import threading
import time

import pytest

from backup_repository.storage.blobstore import BlobStore
from tests.conftest import create_bucket
from tests.support import S3_KEY, S3_SECRET

THREADS = 8
#: seconds of forced switching: the soak's finding (docs/scaling.md)
SECONDS = 20.0


def test_concurrent_calls_from_eight_threads_get_their_own_answers(minio_server, monkeypatch):
    endpoint = minio_server.endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    bucket = create_bucket(endpoint)
    store = BlobStore.from_url(f"s3://{bucket}?endpoint={endpoint}&disableSSL=true&s3ForcePathStyle=true"
                               "&region=eu-central-1")
    backend = store.backend
    objects = {f"c/object-{i}": os.urandom(1000 + 777 * i) for i in range(THREADS)}  # a different size each
    for name, data in objects.items():
        backend.put_bytes(name, data)
    backend.check()
    wrong, calls, connections = [], [0] * THREADS, set()
    deadline = time.monotonic() + SECONDS

    def work(index: int):
        name = f"c/object-{index}"
        data = objects[name]
        connections.add(id(backend._driver.connection))  # noqa: SLF001 — the ownership rule itself
        while time.monotonic() < deadline:
            try:
                size = backend.size(name)
                if size != len(data):
                    wrong.append((name, "size", size))
                got = backend.get_bytes(name)
                if got != data:
                    wrong.append((name, "get_bytes", len(got)))
                if backend.size(f"c/missing-{index}") is not None:
                    wrong.append((name, "a missing object has a size"))
                scratch = f"c/scratch-{index}"  # writes and deletions are signed requests too
                backend.put_bytes(scratch, data[:index + 1])
                if backend.size(scratch) != index + 1:
                    wrong.append((scratch, "size after put"))
                if not backend.delete(scratch) or backend.size(scratch) is not None:
                    wrong.append((scratch, "not deleted"))
            except Exception as exc:  # noqa: BLE001 — any failure is a wrong answer here
                wrong.append((name, "raised", repr(exc)[:200]))
            calls[index] += 7

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch as often as the interpreter can: races show at once
    try:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 60)
    finally:
        sys.setswitchinterval(switch)
    assert min(calls) >= 70, calls
    assert wrong == [], (len(wrong), wrong[:10])
    # the rule behind the right answers: no two threads share a connection (a race shows only now and then)
    assert len(connections) == THREADS, len(connections)
