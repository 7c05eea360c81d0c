"""/health and /ready (docs/api.md#collection-health) against a real server."""

import shutil

import pytest
import requests

from tests.support import HEALTH_KEY

INVALID = ("health code invalid. Should be provided withing 'Authorization' header or 'code' query string. "
           "Must match --health-check-code commandline switch value")
CHECKS = ["DbValidator", "StorageAvailabilityValidator", "ConfigurationProviderValidator"]


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
    assert response.json() == {"status": False, "error": INVALID, "data": {}}


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
