"""Several instances, crashes, restarts and failing dependencies — against real processes, real PostgreSQL and a
real S3-protocol server. After every fault the test downloads every registered version and checks its SHA-256
against what was uploaded: nothing lost, nothing partial."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests import support
from tests.integration.collections_config import PASSWORD, collection, stalled_upload, write_collections_config
from tests.integration.collections_config import version_path as path
from tests.support import COLLECTIONS, RawUpload, TcpProxy, pgp_message, wait_until, with_args



class Ledger:
    """What was uploaded successfully, to check after each fault that every version is intact."""

    def __init__(self):
        self.sha = {}  # (collection, number) -> sha256

    def upload(self, server, token, collection_id, body, **kwargs):
        response = server.request("POST", path(collection_id), token, data=body, **kwargs)
        if response.status_code == 200:
            number = response.json()["data"]["version"]["versionNumber"]
            assert (collection_id, number) not in self.sha, "a version number was given twice"
            self.sha[(collection_id, number)] = hashlib.sha256(body).hexdigest()
        return response

    def check(self, server, token):
        """Every registered version downloads whole with the bytes that were uploaded; no version is unknown."""
        for collection_id in {c for c, _ in self.sha} | {"docs"}:
            listed = server.get(path(collection_id), token).json()["data"]["versions"]
            for version in listed:
                key = (collection_id, version["versionNumber"])
                assert key in self.sha, f"a version nobody uploaded completely: {key}"
                body = server.get(path(collection_id, f"/{version['versionNumber']}"), token).content
                assert hashlib.sha256(body).hexdigest() == self.sha[key] == version["sha256"], key


@pytest.fixture
def cfg(config):
    write_collections_config(config)
    config.write(COLLECTIONS, "large", collection("large", max_count=3, one="50M", total="150M"))
    return config


# --- several instances -------------------------------------------------------------------------------------------

def test_two_instances_on_postgresql_and_s3(make_backend, cfg, start_server):
    backend = make_backend("postgres", "s3")
    a, b = start_server(backend, cfg), start_server(backend, cfg)
    ledger = Ledger()

    # a login on one instance works on the other; a logout on one is honoured by the other
    token = a.login("admin", PASSWORD)
    assert b.get("/api/stable/auth/whoami", token).status_code == 200
    short = b.login("reader", PASSWORD)
    assert a.request("DELETE", "/api/stable/auth/logout", short).status_code == 200
    assert b.get("/api/stable/auth/whoami", short).status_code == 401

    # one upload to a collection at a time, whichever instance receives it
    body = pgp_message(os.urandom(200_000))
    raw = RawUpload(a.url, path("docs"), token, length=len(body))
    raw.send(body[:50_000])
    time.sleep(0.3)
    assert ledger.upload(b, token, "docs", pgp_message(b"other")).status_code == 409
    raw.send(body[50_000:])
    status, answer = raw.response()
    raw.close()
    assert status == 200
    ledger.sha[("docs", answer["data"]["version"]["versionNumber"])] = hashlib.sha256(body).hexdigest()

    # a crowd of uploads to one collection through both: only 200 or 409, never a duplicate number
    results = []

    def race(server, index):
        results.append(ledger.upload(server, token, "docs", pgp_message(os.urandom(100_000 + index))).status_code)

    threads = [threading.Thread(target=race, args=((a, b)[i % 2], i)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert set(results) <= {200, 409} and 200 in results

    # uploads to different collections through both at once: all succeed
    results.clear()
    threads = [threading.Thread(target=lambda s=s, c=c: results.append(
        ledger.upload(s, token, c, pgp_message(os.urandom(300_000))).status_code))
        for s, c in ((a, "older"), (b, "open"), (a, "closed"), (b, "large"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == [200] * 4

    numbers = [v["versionNumber"] for v in a.get(path("docs"), token).json()["data"]["versions"]]
    assert len(numbers) == len(set(numbers))
    ledger.check(a, token)
    ledger.check(b, token)


# --- crashes and restarts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("db, storage", [("postgres", "s3"), ("postgres", "local"), ("sqlite", "azure")])
def test_kill_9_mid_upload_then_restart(db, storage, make_backend, cfg, start_server):
    backend = make_backend(db, storage)
    ledger = Ledger()
    server = start_server(backend, cfg, "--upload-lease=2s")
    token = server.login("admin", PASSWORD)
    assert ledger.upload(server, token, "large", pgp_message(os.urandom(1 << 20))).status_code == 200

    raw = RawUpload(server.url, path("large"), token, chunked=True)
    raw.send(pgp_message(os.urandom(6 << 20))[:-100])  # past S3's first 5 MiB part (Azure's 4 MiB block)
    assert wait_until(lambda: len(backend.objects()) > 1, timeout=10), backend.objects()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    raw.close()
    assert len(backend.objects()) > 1  # the crash left something behind
    time.sleep(7.5)  # the upload's lease (2s) plus the janitor's margin (5s)

    # the restart's janitor removes the leftovers of the dead upload
    again = start_server(backend, cfg, "--http-upload-timeout=1s", "--storage-io-timeout=1s")
    assert wait_until(lambda: backend.objects() == ["large/large-1.gpg"], timeout=10), backend.objects()
    assert "janitor: an upload of large/large-2.gpg to large never finished" in again.log()
    token = again.login("admin", PASSWORD)
    listed = [v["versionNumber"] for v in again.get(path("large"), token).json()["data"]["versions"]]
    assert listed == [1]
    # the lock died with its holder's connection: the next upload is accepted at once (SQLite's lease instead
    # runs out within 45 s: test_collections_rules.py)
    response = ledger.upload(again, token, "large", pgp_message(b"after the crash"))
    assert response.status_code == 200, response.text
    ledger.check(again, token)


def test_sigterm_lets_uploads_in_flight_finish(make_backend, cfg, start_server):
    backend = make_backend("sqlite", "local")
    server = start_server(backend, cfg, "--shutdown-grace=20s")
    token = server.login("admin", PASSWORD)
    body = pgp_message(os.urandom(500_000))
    raw = RawUpload(server.url, path("docs"), token, length=len(body))
    raw.send(body[:100_000])
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):  # no new connections
        requests.get(server.url + "/health", timeout=5)
    raw.send(body[100_000:])
    status, answer = raw.response()
    raw.close()
    assert status == 200 and answer["data"]["version"]["versionNumber"] == 1
    assert server.proc.wait(30) == 0
    again = start_server(backend, cfg)
    token = again.login("admin", PASSWORD)
    assert again.get(path("docs", "/1"), token).content == body


def test_sigterm_aborts_what_does_not_finish_within_the_grace(make_backend, cfg, start_server):
    backend = make_backend("postgres", "s3")
    server = start_server(backend, cfg, "--shutdown-grace=1s")
    token = server.login("admin", PASSWORD)
    raw = stalled_upload(server, backend, token, "large", 6 << 20)  # past S3's first 5 MiB part
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert time.monotonic() - began < 10
    raw.close()
    assert backend.objects() == []  # the multipart upload was aborted, nothing registered
    again = start_server(backend, cfg)
    token = again.login("admin", PASSWORD)
    assert again.get(path("large"), token).json()["data"]["versions"] == []


# --- dependencies failing --------------------------------------------------------------------------------------

def ready_checks(server) -> dict:
    response = server.get("/ready", params={"code": support.HEALTH_KEY})
    return {check["name"]: check["status"] for check in response.json()["data"]["health"]}


def behind_proxy(backend, target, replace, cfg, start_server):
    """A server that reaches a dependency through a TcpProxy, with one version stored: (server, proxy, ledger,
    token). ``replace(proxy_port)`` gives the flag substitutions that point the server at the proxy."""
    proxy = TcpProxy(*target).start()
    server = start_server(with_args(backend, replace(proxy.port)), cfg)
    ledger = Ledger()
    token = server.login("admin", PASSWORD)
    assert ledger.upload(server, token, "docs", pgp_message(b"before")).status_code == 200
    return server, proxy, ledger, token


def postgres_behind_proxy(make_backend, cfg, start_server):
    backend = make_backend("postgres", "local")
    port = backend.db_params["port"]
    return behind_proxy(backend, (backend.db_params["host"], port),
                        lambda p: {f"--db-port={port}": f"--db-port={p}"}, cfg, start_server)


def s3_behind_proxy(make_backend, cfg, start_server):
    backend = make_backend("sqlite", "s3")
    host, port = backend.s3_endpoint.split(":")
    return behind_proxy(backend, (host, int(port)),
                        lambda p: {f"endpoint={backend.s3_endpoint}": f"endpoint=127.0.0.1:{p}"}, cfg, start_server)


def test_postgresql_going_away_is_503_and_the_server_recovers(make_backend, cfg, start_server):
    server, proxy, ledger, token = postgres_behind_proxy(make_backend, cfg, start_server)
    try:
        proxy.stop()
        began = time.monotonic()
        whoami = server.get("/api/stable/auth/whoami", token)
        assert time.monotonic() - began < 15  # an answer, not a hang
        assert whoami.status_code == 503
        assert whoami.json() == {"status": False, "data": {},
                                 "error": "the database is not available; the server log has the details"}
        assert server.request("POST", "/api/stable/auth/login",
                              json={"username": "admin", "password": PASSWORD}).status_code == 503
        assert ready_checks(server)["DbValidator"] is False
        assert server.get("/health").status_code == 200
    finally:
        proxy.start()
    assert wait_until(lambda: server.get("/api/stable/auth/whoami", token).status_code == 200, timeout=20)
    assert ready_checks(server)["DbValidator"] is True
    assert ledger.upload(server, token, "docs", pgp_message(b"after")).status_code == 200
    ledger.check(server, token)
    assert "Traceback" not in server.log()
    proxy.stop()


def test_the_object_store_going_away_is_503_and_the_server_recovers(make_backend, cfg, start_server):
    server, proxy, ledger, token = s3_behind_proxy(make_backend, cfg, start_server)
    try:
        proxy.stop()
        upload = ledger.upload(server, token, "docs", pgp_message(b"while away"))
        assert upload.status_code == 503
        assert upload.json()["error"] == "the storage is not available; the server log has the details"
        download = server.get(path("docs", "/1"), token)
        assert download.status_code == 503 and download.json()["status"] is False
        assert ready_checks(server)["StorageAvailabilityValidator"] is False
        assert [v["versionNumber"] for v in server.get(path("docs"), token).json()["data"]["versions"]] == [1]
    finally:
        proxy.start()
    # a storage check's outcome answers every /ready for 5 s (health/checks.py STORAGE_CHECK_REUSE)
    assert wait_until(lambda: ready_checks(server)["StorageAvailabilityValidator"] is True, timeout=10)
    assert ledger.upload(server, token, "docs", pgp_message(b"after")).status_code == 200
    ledger.check(server, token)
    assert "Traceback" not in server.log()
    proxy.stop()


def test_the_object_store_going_away_mid_download_cuts_it_short(make_backend, cfg, start_server):
    """A download relayed from S3 (plain HTTP: the store's connection spliced to the client's socket) whose store
    goes away half-way: the client gets a short body and a closed connection, the log says why (the store's
    failure, not the client's), and the next download is whole."""
    server, proxy, ledger, token = s3_behind_proxy(make_backend, cfg, start_server)
    body = pgp_message(os.urandom(40 << 20))
    assert ledger.upload(server, token, "large", body).status_code == 200
    host, port = server.url.rsplit("/", 1)[1].split(":")
    client = socket.create_connection((host, int(port)), timeout=30)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # the relay waits for this reader
    client.sendall(f"GET {path('large', '/1')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
                   .encode())
    received = client.recv(1 << 20)
    try:
        proxy.stop()  # the store's connection is cut while the relay waits for room in the client's socket
        while chunk := client.recv(1 << 20):
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        client.close()
        proxy.start()
    head, _, got = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {len(body)}".encode() in head
    assert 0 < len(got) < len(body) and got == body[:len(got)]
    assert wait_until(lambda: "download of large v1 failed after" in server.log(), timeout=10), server.log()
    assert "the store's connection failed" in server.log() or "bytes early" in server.log()
    assert hashlib.sha256(server.get(path("large", "/1"), token).content).digest() == hashlib.sha256(body).digest()
    assert "Traceback" not in server.log()


def answer(response) -> tuple:
    """What a client sees of a failure: status, body and Retry-After."""
    return response.status_code, response.json(), response.headers.get("Retry-After")


def test_a_database_outage_gets_one_answer_everywhere(make_backend, cfg, start_server):
    """docs/api.md#errors: login, listing, download and upload answer a database outage identically."""
    server, proxy, _, token = postgres_behind_proxy(make_backend, cfg, start_server)
    try:
        proxy.stop()
        answers = {
            "login": answer(server.request("POST", "/api/stable/auth/login",
                                           json={"username": "admin", "password": PASSWORD})),
            "listing": answer(server.get(path("docs"), token)),
            "download": answer(server.get(path("docs", "/1"), token)),
            "upload": answer(server.request("POST", path("docs"), token, data=pgp_message(b"while away"))),
        }
    finally:
        proxy.start()
        proxy.stop()
    expected = (503, {"status": False, "data": {},
                      "error": "the database is not available; the server log has the details"}, "5")
    assert answers == dict.fromkeys(answers, expected), answers


def test_a_broken_store_gets_one_answer_on_upload_and_download(make_backend, cfg, start_server):
    server, proxy, _, token = s3_behind_proxy(make_backend, cfg, start_server)
    try:
        proxy.stop()
        answers = {"upload": answer(server.request("POST", path("docs"), token, data=pgp_message(b"x"))),
                   "download": answer(server.get(path("docs", "/1"), token))}
    finally:
        proxy.start()
        proxy.stop()
    expected = (503, {"status": False, "data": {},
                      "error": "the storage is not available; the server log has the details"}, "5")
    assert answers == {"upload": expected, "download": expected}, answers


def test_a_full_disk_is_507_and_leaves_nothing(make_backend, cfg, start_server, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip()}); needs root in a "
                    "container that allows mounts")
    try:
        (mount / "storage").mkdir()
        backend = make_backend("sqlite", "local")
        full = with_args(backend, {f"file://{backend.storage_path}": f"file://{mount / 'storage'}"})
        full.storage_path = mount / "storage"
        server = start_server(full, cfg)
        ledger = Ledger()
        token = server.login("admin", PASSWORD)
        assert ledger.upload(server, token, "large", pgp_message(os.urandom(1 << 20))).status_code == 200
        too_big = ledger.upload(server, token, "large", pgp_message(os.urandom(6 << 20)))
        assert too_big.status_code == 507, too_big.text
        assert too_big.json()["error"] == "the storage is full"
        assert full.objects() == ["large/large-1.gpg"]
        assert ledger.upload(server, token, "large", pgp_message(os.urandom(1 << 20))).status_code == 200
        ledger.check(server, token)
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# --- integrity -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("db, storage", [("sqlite", "local"), ("postgres", "local"), ("sqlite", "azure"),
                                         ("sqlite", "gcs")])
def test_verify_reports_a_corrupt_byte_and_a_missing_object(db, storage, make_backend, cfg, start_server, tmp_path):
    backend = make_backend(db, storage)
    server = start_server(backend, cfg)
    assert server.get("/ready", params={"code": support.HEALTH_KEY}).status_code == 200  # the storage round trip
    token = server.login("admin", PASSWORD)
    for index in range(3):
        assert server.request("POST", path("docs"), token, data=pgp_message(os.urandom(10_000))).status_code == 200

    verify = [sys.executable, "-m", "backup_repository", "--verify", f"--config-local-path={cfg.root}",
              *backend.args]
    env = {**support.base_env(tmp_path), **backend.env}
    clean = subprocess.run(verify, capture_output=True, text=True, env=env, cwd=str(support.ROOT))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == "" and "3 intact, 0 corrupt, 0 missing" in clean.stderr

    data = bytearray(backend.get_object("docs/docs-1.gpg"))
    data[5000] ^= 0x01  # one bit of one byte
    backend.put_object("docs/docs-1.gpg", bytes(data))
    backend.delete_object("docs/docs-3.gpg")

    found = subprocess.run(verify, capture_output=True, text=True, env=env, cwd=str(support.ROOT))
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("docs v1 (docs-1.gpg): corrupt: sha256 is ")
    assert lines[1] == "docs v3 (docs-3.gpg): missing from the storage"
    assert "1 intact, 1 corrupt, 1 missing" in found.stderr

    checks = {c["name"]: c for c in server.get("/api/stable/repository/collection/docs/health").json()["data"]
              ["health"]}
    assert checks["IntegrityValidator"]["status"] is False
    assert "v1 (docs-1.gpg): corrupt: sha256 is" in checks["IntegrityValidator"]["message"]
    assert checks["StorageConsistencyValidator"]["status"] is False
    assert checks["StorageConsistencyValidator"]["message"] == (
        "versions registered without their object in the storage: v3 (docs-3.gpg)")


def test_periodic_verification_in_the_server(make_backend, cfg, start_server):
    backend = make_backend("sqlite", "local")
    server = start_server(backend, cfg, "--verify-interval=1s")
    token = server.login("admin", PASSWORD)
    server.request("POST", path("docs"), token, data=pgp_message(os.urandom(10_000)))
    stored = backend.storage_path / "docs" / "docs-1.gpg"
    stored.write_bytes(stored.read_bytes()[:-1] + b"X")
    health = "/api/stable/repository/collection/docs/health"
    assert wait_until(lambda: not {c["name"]: c for c in server.get(health).json()["data"]["health"]}
                      ["IntegrityValidator"]["status"], timeout=15)
    assert "integrity: docs v1 (docs-1.gpg): corrupt" in server.log()
