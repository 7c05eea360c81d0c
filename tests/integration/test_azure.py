"""Azure Blob Storage (``azblob://``, docs/configuration.md#azure-blob-storage) on a real Blob service: Azurite
(tests/azurite.py). The collection suite runs on it too (test_collections_api.py, test_downloads.py, test_health.py,
the janitor and --verify in test_fault_tolerance.py); here is what is Azure's own: blocks staged by an upload that
never commits, a shared access signature instead of the account key, the store going away, objectLock refused."""

import os
import subprocess
import sys
import threading
import time

import pytest

from tests import support
from tests.integration.collections_config import PASSWORD, collection, write_collections_config
from tests.integration.collections_config import version_path as path
from tests.integration.test_body_cost import rss_mib
from tests.integration.test_fault_tolerance import Ledger, behind_proxy, ready_checks
from tests.support import COLLECTIONS, RawUpload, pgp_message, wait_until

MIB = 1 << 20


@pytest.fixture
def cfg(config):
    write_collections_config(config)
    config.write(COLLECTIONS, "large", collection("large", max_count=2, one="50M", total="100M"))
    return config


def test_an_upload_cut_after_blocks_were_staged_leaves_no_block(make_backend, cfg, start_server):
    """An upload stages 4 MiB blocks; the blob appears only when the block list is committed. A client that goes
    away after two blocks leaves no blob, and the server drops the staged blocks at once (Azure would keep them,
    uncommitted, for a week)."""
    backend = make_backend("sqlite", "azure")
    server = start_server(backend, cfg)
    token = server.login("admin", PASSWORD)
    raw = RawUpload(server.url, path("large"), token, chunked=True)
    raw.send(pgp_message(os.urandom(10 * MIB))[:-100])
    assert wait_until(lambda: backend.objects() == ["uncommitted:large/large-1.gpg"], timeout=10), backend.objects()
    raw.close()
    assert wait_until(lambda: backend.objects() == [], timeout=10), backend.objects()
    assert wait_until(lambda: "upload of large v1 abandoned; nothing of it was kept" in server.log(), timeout=10)
    body = pgp_message(os.urandom(9 * MIB))
    stored = server.request("POST", path("large"), token, data=body)
    assert stored.status_code == 200, server.log()[-3000:]
    assert stored.json()["data"]["version"]["versionNumber"] == 1
    assert server.get(path("large", "/1"), token).content == body
    assert backend.objects() == ["large/large-1.gpg"]


def streamed_pgp(size: int, piece: bytes):
    """A well-formed OpenPGP body of ``size`` payload bytes (as support.pgp_message), sent piece by piece."""
    head = support.pgp_message(b"")
    yield head[:-5] + (size + 1).to_bytes(4, "big") + b"\x01"
    for offset in range(0, size, len(piece)):
        yield piece[:size - offset]


def test_a_large_upload_is_streamed_in_blocks_not_held(make_backend, cfg, start_server):
    """Peak RSS while 160 MiB go up stays within some MiB of the idle server's (a body held whole would add 160):
    the 1 GiB figures of S3 and Azure are in docs/performance.md."""
    cfg.write(COLLECTIONS, "large", collection("large", max_count=1, one="200M", total="200M"))
    backend = make_backend("sqlite", "azure")
    server = start_server(backend, cfg)
    token = server.login("admin", PASSWORD)
    before = rss_mib(server.proc.pid)
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(server.proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stored = server.request("POST", path("large"), token, data=streamed_pgp(160 * MIB, os.urandom(MIB)))
    finally:
        done.set()
        sampler.join()
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["version"]["filesize"] == 160 * MIB + support.PGP_OVERHEAD
    assert peak[0] - before < 48, (before, peak[0])


def with_sas(backend, token: str) -> support.Backend:
    """The backend, authorised by a shared access signature instead of the account key."""
    sas = support.with_args(backend, {})
    sas.env = {"AZURE_STORAGE_ACCOUNT": support.AZURE_ACCOUNT, "AZURE_STORAGE_SAS_TOKEN": token}
    return sas


def test_a_shared_access_signature_instead_of_the_account_key(make_backend, azurite_server, cfg, start_server):
    backend = make_backend("sqlite", "azure")
    server = start_server(with_sas(backend, azurite_server.account_sas()), cfg)
    token = server.login("admin", PASSWORD)
    ledger = Ledger()
    for size in (1000, 5 * MIB, 6 * MIB):  # the third rotates the first out (maxBackupsCount 2)
        assert ledger.upload(server, token, "large", pgp_message(os.urandom(size))).status_code == 200
    assert backend.objects() == ["large/large-2.gpg", "large/large-3.gpg"]
    del ledger.sha[("large", 1)]
    ledger.check(server, token)
    ranged = server.get(path("large", "/3"), token, headers={"Range": "bytes=4194300-4194309"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    assert ready_checks(server)["StorageAvailabilityValidator"] is True


def test_a_signature_the_store_refuses_stops_the_start(make_backend, azurite_server, cfg, tmp_path):
    backend = make_backend("sqlite", "azure")
    forged = azurite_server.account_sas().replace("sp=rwdlac", "sp=rwdlacx")  # signed for other permissions
    env = {**support.base_env(tmp_path), **with_sas(backend, forged).env}
    started = subprocess.run(
        [sys.executable, "-m", "backup_repository", "--listen=127.0.0.1:0", f"--jwt-secret-key={support.JWT_SECRET}",
         f"--config-local-path={cfg.root}", *backend.args],
        capture_output=True, text=True, env=env, cwd=str(support.ROOT), timeout=30)
    assert started.returncode == 1, started.stderr
    assert f"cannot reach azblob://{backend.bucket} at {azurite_server.domain}" in started.stderr


def test_object_lock_on_azure_is_refused_at_start(make_backend, cfg, tmp_path):
    backend = make_backend("sqlite", "azure")
    url = next(arg for arg in backend.args if arg.startswith("--storage-url=")) + "&objectLock=governance"
    args = [arg for arg in backend.args if not arg.startswith("--storage-url=")] + [url]
    started = subprocess.run(
        [sys.executable, "-m", "backup_repository", "--listen=127.0.0.1:0", f"--jwt-secret-key={support.JWT_SECRET}",
         f"--config-local-path={cfg.root}", *args],
        capture_output=True, text=True, env={**support.base_env(tmp_path), **backend.env}, cwd=str(support.ROOT),
        timeout=30)
    assert started.returncode != 0
    assert "objectLock is not available on azblob:// storage" in started.stderr
    assert "immutability" in started.stderr


def test_the_blob_service_going_away_is_503_and_the_server_recovers(make_backend, azurite_server, cfg,
                                                                   start_server):
    backend = make_backend("sqlite", "azure")
    server, proxy, ledger, token = behind_proxy(
        backend, ("127.0.0.1", azurite_server.port),
        lambda port: {f"domain={azurite_server.domain}": f"domain=127.0.0.1:{port}"}, cfg, start_server)
    try:
        proxy.stop()
        upload = ledger.upload(server, token, "docs", pgp_message(b"while away"))
        assert upload.status_code == 503
        assert upload.json()["error"] == "the storage is not available; the server log has the details"
        assert server.get(path("docs", "/1"), token).status_code == 503
        assert ready_checks(server)["StorageAvailabilityValidator"] is False
    finally:
        proxy.start()
    assert wait_until(lambda: ready_checks(server)["StorageAvailabilityValidator"] is True, timeout=10)
    assert ledger.upload(server, token, "docs", pgp_message(b"after")).status_code == 200
    ledger.check(server, token)
    assert "Traceback" not in server.log()
    proxy.stop()
