"""/health and /ready (docs/api.md#collection-health) against a real server."""

import shutil

import pytest
import requests

from tests.conftest import STORES
from tests.support import HEALTH_KEY, READY_CODE_INVALID, wait_until
CHECKS = ["DbValidator", "StorageAvailabilityValidator", "ConfigurationProviderValidator"]


@pytest.fixture(params=STORES, ids=[f"{db}-{store}" for db, store in STORES])
def backend(request, make_backend):
    """Every database × store, and Azure: /ready's storage check is a round trip through the store."""
    return make_backend(*request.param)


def test_health_needs_nothing(backend, config, start_server):
    server = start_server(backend, config)
    response = server.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": True, "data": {"msg": (
        "The server is up and running. Dependent services are not shown there. Take a look at /ready endpoint")}}
    assert response.headers["Content-Type"].startswith("application/json")


def test_ready_with_code_in_header_or_query(backend, config, start_server):
    server = start_server(backend, config)
    for response in (server.get("/ready", headers={"Authorization": HEALTH_KEY}),
                     server.get(f"/ready?code={HEALTH_KEY}")):
        assert response.status_code == 200, response.text
        health = response.json()["data"]["health"]
        assert [c["name"] for c in health] == CHECKS
        for check in health:
            assert check == {"name": check["name"], "status": True, "statusText": f"{check['name']}=true",
                             "message": "OK"}


@pytest.mark.parametrize("kwargs", [{}, {"params": {"code": "wrong"}}, {"headers": {"Authorization": "wrong"}},
                                    {"headers": {"Authorization": f"Bearer {HEALTH_KEY}"}}])
def test_ready_refuses_a_wrong_or_missing_code(make_backend, config, start_server, kwargs):
    server = start_server(make_backend("sqlite", "local"), config)
    response = requests.get(server.url + "/ready", timeout=10, **kwargs)
    assert response.status_code == 403
    assert response.json() == {"status": False, "error": READY_CODE_INVALID, "data": {}}


def test_ready_refuses_everyone_when_no_key_is_configured(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config, "--health-check-key=")
    assert server.get("/ready").status_code == 403
    assert server.get("/ready?code=").status_code == 403


def test_ready_reports_broken_storage_and_configuration(make_backend, config, start_server):
    backend = make_backend("sqlite", "local")
    server = start_server(backend, config)
    storage_dir = next(a for a in backend.args if a.startswith("--storage-url=")).split("file://", 1)[1]
    shutil.rmtree(storage_dir)
    shutil.rmtree(config.ns)
    response = server.get(f"/ready?code={HEALTH_KEY}")
    assert response.status_code == 500
    body = response.json()
    assert body["status"] is False and body["error"] == "one of checks failed"
    health = {c["name"]: c for c in body["data"]["health"]}
    assert health["DbValidator"]["status"] is True
    assert health["StorageAvailabilityValidator"]["status"] is False
    assert health["StorageAvailabilityValidator"]["statusText"] == "StorageAvailabilityValidator=false"
    assert health["ConfigurationProviderValidator"]["message"].startswith("configuration provider is not usable")
    assert "Traceback" not in response.text


def test_the_probe_listener_answers_without_a_key_and_tells_no_details(make_backend, config, start_server):
    """--probe-listen (docs/kubernetes.md#probes): kubelet's probes need no key in the pod spec; the answer says
    ready or not and which checks failed, never their messages; the main port still wants the key."""
    from tests.support import free_port

    backend = make_backend("sqlite", "local")
    port = free_port()
    server = start_server(backend, config, f"--probe-listen=127.0.0.1:{port}")
    probe = f"http://127.0.0.1:{port}"
    ready = requests.get(probe + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": True, "data": {"ready": True}}
    assert requests.get(probe + "/health", timeout=10).status_code == 200
    assert requests.get(probe + "/api/stable/auth/whoami", timeout=10).status_code == 404  # nothing else there
    assert server.get("/ready").status_code == 403

    storage_dir = next(a for a in backend.args if a.startswith("--storage-url=")).split("file://", 1)[1]
    shutil.rmtree(storage_dir)
    # the storage check's last outcome answers for up to 5 s (health/checks.py STORAGE_CHECK_REUSE)
    assert wait_until(lambda: requests.get(probe + "/ready", timeout=10).status_code == 503, timeout=10)
    broken = requests.get(probe + "/ready", timeout=10)
    assert broken.status_code == 503
    assert broken.json() == {"status": False, "error": "not ready: StorageAvailabilityValidator",
                             "data": {"ready": False, "failed": ["StorageAvailabilityValidator"]}}
    assert storage_dir not in broken.text


def test_a_probe_address_in_use_stops_the_start(make_backend, config, start_server):
    import socket
    import subprocess
    import sys

    from tests.support import ROOT, base_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "backup_repository", "--listen=127.0.0.1:0",
                                 f"--probe-listen=127.0.0.1:{port}", "--jwt-secret-key=probe-test-key",
                                 f"--config-local-path={config.root}", *make_backend("sqlite", "local").args],
                                capture_output=True, text=True, env=base_env(ROOT), cwd=str(ROOT), timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (--probe-listen)" in result.stderr


def test_the_probe_listener_has_the_bounds_of_the_main_one(make_backend, config, start_server):
    """--probe-listen keeps the main listener's bounds: its rate limit (--rate-server-health-limit), a body refused
    and the connection closed at once, slow headers cut at --http-idle-timeout when it is under the probe's own
    10 s, and /ready's storage round trip shared: 300 keyless requests cost a few round trips, not 300 objects
    written, read and deleted (health/checks.py STORAGE_CHECK_REUSE)."""
    import socket
    import threading
    import time

    from tests.support import free_port

    port = free_port()
    server = start_server(make_backend("sqlite", "local"), config, f"--probe-listen=127.0.0.1:{port}",
                          "--log-level=debug")
    probe = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    answers = []

    def ask():
        session = requests.Session()
        for _ in range(60):
            answers.append(session.get(probe + "/ready", timeout=10).status_code)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    seconds = time.monotonic() - began
    assert answers.count(200) == 300, answers
    trips = server.log().count("storage check: a round trip")
    assert 1 <= trips <= seconds / 5 + 2, (trips, seconds)

    # a body to the probe's /health: refused, and the connection closed within seconds (not held open)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
        began = time.monotonic()
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        assert time.monotonic() - began < 6
    assert received.startswith(b"HTTP/1.1 40"), received[:100]

    limited = start_server(make_backend("sqlite", "local"), config, f"--probe-listen=127.0.0.1:{free_port()}",
                           "--rate-server-health-limit=5", "--http-idle-timeout=2s")
    limited_probe = "http://127.0.0.1:" + next(a for a in limited.args if a.startswith("--probe-listen")).rsplit(
        ":", 1)[1]
    statuses = [requests.get(limited_probe + "/health", timeout=10).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:], statuses

    # headers trickled to the probe port: cut at --http-idle-timeout (2 s), as on the main listener (not after 10 s)
    with socket.create_connection(("127.0.0.1", int(limited_probe.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.5)
        began = time.monotonic()
        while time.monotonic() - began < 9:
            try:
                sock.sendall(b"X-Slow: y\r\n")
                if sock.recv(65536) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        assert time.monotonic() - began < 5, "slow headers to the probe port were not cut at --http-idle-timeout"
