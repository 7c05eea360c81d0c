"""What every endpoint answers alike (docs/api.md#errors), in process: /health and /ready, unknown paths, trailing
slashes, bodies where none is read, methods an endpoint lacks, rate limits, a stopping server, the safety
headers."""

import pytest

from tests.support import CHALLENGE, HEALTH_KEY, READY_CODE_INVALID, assert_error

NOT_FOUND = {"status": False, "error": "not found", "data": {}}
NO_BODY = "this endpoint takes no request body"
CHECKS = ["DbValidator", "StorageAvailabilityValidator", "ConfigurationProviderValidator"]


def test_health(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": True, "data": {"msg": (
        "The server is up and running. Dependent services are not shown there. Take a look at /ready endpoint")}}
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("path, headers", [("/ready", {"Authorization": HEALTH_KEY}),
                                           (f"/ready?code={HEALTH_KEY}", {})])
def test_ready_with_its_code(api, path, headers):
    response = api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["health"] == [
        {"name": name, "status": True, "statusText": f"{name}=true", "message": "OK"} for name in CHECKS]


@pytest.mark.parametrize("path, headers", [("/ready", {}), ("/ready?code=wrong", {}),
                                           ("/ready", {"Authorization": f"Bearer {HEALTH_KEY}"})])
def test_ready_without_its_code_is_403(api, path, headers):
    assert_error(api.get(path, headers=headers), 403, READY_CODE_INVALID)


def test_ready_reports_a_store_that_is_gone(api):
    api.backend.storage_path.rmdir()
    response = api.get(f"/ready?code={HEALTH_KEY}")
    assert response.status_code == 500
    body = response.json()
    assert body["status"] is False and body["error"] == "one of checks failed"
    assert [check["status"] for check in body["data"]["health"]] == [True, False, True]


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/nope", None), ("GET", "/api/stable/nothing/here", None), ("DELETE", "/", None),
    ("POST", "/api/stable/auth/logins", b'{"username": "admin"}'),
])
def test_an_unknown_path_is_a_404_in_the_envelope(api, method, path, body):
    response = api.request(method, path, data=body)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize("method, path, status, location", [
    ("GET", "/health/?x=1", 301, "/health?x=1"),
    ("HEAD", "/api/stable/auth/whoami/", 301, "/api/stable/auth/whoami"),
    ("POST", "/api/stable/auth/login/", 308, "/api/stable/auth/login"),
])
def test_a_known_route_with_a_trailing_slash_is_redirected(api, method, path, status, location):
    response = api.request(method, path, data=b"{}" if method == "POST" else None)
    assert response.status_code == status
    assert response.headers["Location"] == location


def test_a_body_where_none_is_read_is_refused(api):
    token = api.login("admin", "admin")
    for method, path in (("GET", "/health"), ("GET", "/api/stable/auth/whoami"),
                         ("DELETE", "/api/stable/auth/logout")):
        response = api.request(method, path, token, data=b"x" * 100)
        assert_error(response, 400, NO_BODY)
        assert response.headers["Connection"] == "close"

    async def chunked_body(write):  # Tornado's client frames chunks only for POST, PUT and PATCH
        await write(b"e\r\na chunked body\r\n0\r\n\r\n")

    chunked = api.request("GET", "/health", headers={"Transfer-Encoding": "chunked"}, body_producer=chunked_body)
    assert_error(chunked, 400, NO_BODY)
    # the token still works: the refused requests did nothing
    assert api.get("/api/stable/auth/whoami", token).status_code == 200


@pytest.mark.parametrize("method, path, allowed, body", [
    ("POST", "/health", "GET", None),
    ("POST", "/health", "GET", b"x" * 100),
    ("GET", "/api/stable/auth/login", "POST", None),
    ("PUT", "/api/stable/repository/collection/docs/version", "GET, POST", None),
])
def test_a_method_the_endpoint_lacks_is_405(api, method, path, allowed, body):
    response = api.request(method, path, data=body)
    assert_error(response, 405, "method not allowed")
    assert response.headers["Allow"] == allowed


def test_a_request_body_over_64_kib_is_413(api):
    response = api.request("POST", "/api/stable/auth/login", data=b"{" + b" " * (64 << 10))
    assert_error(response, 413, "the request body is larger than 65536 bytes")


@pytest.mark.parametrize("extra_flags", [("--rate-server-health-limit=2",)])
def test_over_the_rate_limit_is_429_with_retry_after(api):
    assert [api.get("/health").headers["X-RateLimit-Remaining"] for _ in range(2)] == ["1", "0"]
    refused = api.get("/health")
    assert_error(refused, 429, "too many requests, retry later")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    # /ready draws from the same budget
    assert api.get(f"/ready?code={HEALTH_KEY}").status_code == 429


def test_metrics_are_not_served_without_a_token(api):
    assert api.get("/metrics").json() == NOT_FOUND


@pytest.mark.parametrize("extra_flags", [("--metrics-token=metrics-token-for-tests",)])
def test_metrics_with_their_token(api):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "metrics-token-for-tests"}):
        refused = api.get("/metrics", headers=headers)
        assert_error(refused, 401, "metrics token invalid: send it as 'Authorization: Bearer <token>' "
                     "(--metrics-token)")
        assert refused.headers["WWW-Authenticate"] == CHALLENGE
    scrape = api.get("/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"})
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    assert 'backup_repository_http_requests_total{code="4xx",endpoint="metrics"} 3.0' in scrape.text


def test_a_stopping_server_answers_503_with_retry_after(api):
    api.ctx.stopping = True  # what server.drain() sets
    response = api.get("/health")
    assert_error(response, 503, "the server is shutting down; retry in a moment")
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("path, status", [("/health", 200), ("/api/stable/auth/whoami", 401), ("/nope", 404)])
def test_every_answer_carries_the_safety_headers(api, path, status):
    response = api.get(path)
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert len(response.headers["X-Request-Id"]) == 32
    assert "Traceback" not in response.text
