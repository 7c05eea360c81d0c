"""GET /metrics (docs/monitoring.md) against a real server: never public by default, a token or a separate
listener, Prometheus' text format (parsed by prometheus_client's own parser), and a number of series that does
not grow with what clients send."""

import os
import random
import string
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.collections_config import PASSWORD, version_path, write_collections_config
from tests.support import GO_ADMIN_HASH, ROOT, RawUpload, assert_error, base_env, free_port, pgp_message, wait_until

TOKEN = "metrics-token-for-tests"


def series(text: str) -> set:
    return {(sample.name, tuple(sorted(sample.labels.items())))
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_not_served_unless_configured(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config)
    assert server.get("/metrics").status_code == 404


def test_a_token_on_the_main_listener(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config, f"--metrics-token={TOKEN}")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        assert_error(server.get("/metrics", headers=headers), 401,
                     "metrics token invalid: send it as 'Authorization: Bearer <token>' (--metrics-token)")
    scrape = server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scrape.status_code == 200, scrape.text
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    text = scrape.text
    assert value(text, "backup_repository_build_info", version="0.1.0") == 1
    assert value(text, "process_resident_memory_bytes") > 10 << 20
    assert value(text, "backup_repository_http_requests_total", endpoint="metrics", code="4xx") == 3

    server.login("admin", PASSWORD)
    again = server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert value(again, "backup_repository_http_requests_total", endpoint="login", code="2xx") == 1
    assert value(again, "backup_repository_http_request_duration_seconds_count", endpoint="login") == 1


def test_a_separate_listener_and_both(make_backend, config, start_server):
    port = free_port()
    start_server(make_backend("sqlite", "local"), config, f"--metrics-listen=127.0.0.1:{port}")
    scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scrape.status_code == 200 and "backup_repository_build_info" in scrape.text
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 404

    port = free_port()
    server = start_server(make_backend("sqlite", "local"), config, f"--metrics-listen=127.0.0.1:{port}",
                          f"--metrics-token={TOKEN}")
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 401
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_number_of_series_does_not_grow_with_what_clients_send(make_backend, config, start_server):
    """Thousands of random paths, user names and collection names: the same series as after one of each."""
    server = start_server(make_backend("sqlite", "local"), config, f"--metrics-token={TOKEN}")
    rng = random.Random(14)

    def word():
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(12))

    def noise(paths, collections, logins):  # a new connection each: the server may close one after an error
        for _ in range(paths):
            requests.get(f"{server.url}/{word()}/{word()}", timeout=10)
        for _ in range(collections):
            requests.get(f"{server.url}/api/stable/repository/collection/{word()}/version", timeout=10)
            requests.get(f"{server.url}/api/stable/repository/collection/{word()}/health", timeout=10)
        for _ in range(logins):  # each costs an argon2 verification
            requests.post(f"{server.url}/api/stable/auth/login", json={"username": word(), "password": "x"},
                          timeout=10)

    def scrape():
        return series(server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)

    noise(1, 1, 1)
    scrape()  # the scrape's own series exist from the second one on
    before = {name_labels for name_labels in scrape() if not name_labels[0].startswith("process_")}
    noise(2000, 500, 100)
    after = {name_labels for name_labels in scrape() if not name_labels[0].startswith("process_")}
    assert after == before


# --- what the metrics say about what happened --------------------------------------------------------------

def scraper(server, token=TOKEN):
    def scrape() -> str:
        response = server.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.text
    return scrape


def counts(text: str, name: str, label: str) -> dict:
    return {sample.labels[label]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


def collection_values(text: str, collection: str) -> dict:
    """{metric name: value} of one collection's gauges."""
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("backup_repository_collection_") and sample.labels.get("collection") == collection
            and "upload_failures" not in sample.name}  # that one is a counter of each instance


def fresh_scrape(scrape, after: float) -> str:
    """A scrape whose collection metrics were computed after ``after`` (unix seconds)."""
    found = []

    def refreshed():
        found[:] = [scrape()]
        return value(found[0], "backup_repository_collections_refreshed_timestamp_seconds") > after
    assert wait_until(refreshed, timeout=10)
    return found[0]


@pytest.fixture
def outcomes_config(config):
    write_collections_config(config)
    config.user("retired", GO_ADMIN_HASH, roles=["systemAdmin"], extra="  deactivated: true\n")
    config.user("faraway", GO_ADMIN_HASH, roles=["systemAdmin"], extra="  restrictByIP: [\"10.9.0.0/16\"]\n")
    return config


def test_logins_uploads_rotations_and_a_verification_show_in_the_metrics(make_backend, outcomes_config,
                                                                         start_server):
    backend = make_backend("sqlite", "local")
    server = start_server(backend, outcomes_config, f"--metrics-token={TOKEN}", "--metrics-refresh-interval=0.3s",
                          "--max-uploads-per-user=1", "--http-upload-idle-timeout=1s")
    scrape = scraper(server)
    assert set(counts(scrape(), "backup_repository_logins_total", "result").values()) == {0}

    # logins: one of each result but rate_limited (its own server, below)
    admin = server.login("admin", PASSWORD)
    writer = server.login("writer", PASSWORD)
    reader = server.login("reader", PASSWORD)
    for login in ("admin", "retired", "faraway", "ghost"):
        assert server.request("POST", "/api/stable/auth/login",
                              json={"username": login, "password": "wrong" if login == "admin" else PASSWORD}
                              ).status_code == 401
    logins = counts(scrape(), "backup_repository_logins_total", "result")
    assert logins == {"ok": 3, "bad_credentials": 2, "deactivated": 1, "ip_not_allowed": 1, "rate_limited": 0,
                      "queue_full": 0}

    # uploads of each outcome a client can cause
    def post(token, collection, body, **kwargs):
        return server.request("POST", version_path(collection), token, data=body, **kwargs)

    sizes = []
    for index in range(4):  # docs keeps 3: the fourth rotates the first out
        body = pgp_message(os.urandom(1000 * (index + 1)))
        sizes.append(len(body))
        assert post(writer, "docs", body).status_code == 200
    assert post(writer, "docs", b"-- PostgreSQL database dump\n").status_code == 400  # not_gpg
    assert post(writer, "docs", pgp_message(os.urandom(3 << 20))).status_code == 413  # quota
    assert post(writer, "closed", pgp_message(b"x")).status_code == 403  # window_closed
    assert post(reader, "docs", pgp_message(b"x")).status_code == 403  # forbidden
    assert post(writer, "nosuch", pgp_message(b"x")).status_code == 404  # not_found
    assert post("not-a-token", "docs", pgp_message(b"x")).status_code == 401  # unauthenticated
    stalled = RawUpload(server.url, version_path("docs"), admin, chunked=True)
    stalled.send(pgp_message(b"x" * 1000)[:-10])
    in_progress = lambda: value(scrape(), "backup_repository_uploads_in_progress")  # noqa: E731
    assert wait_until(lambda: in_progress() == 1)
    assert post(writer, "docs", pgp_message(b"x")).status_code == 409  # locked
    assert post(admin, "open", pgp_message(b"x")).status_code == 429  # too_many_uploads (one per user)
    status, _ = stalled.response()  # nothing sent for 1 s: 408
    assert status == 408
    stalled.close()
    assert wait_until(lambda: in_progress() == 0)
    gone = RawUpload(server.url, version_path("docs"), writer, length=1 << 20)
    gone.send(pgp_message(b"x" * 1000)[:-10])
    assert wait_until(lambda: in_progress() == 1)
    gone.close()  # client_gone

    def outcomes():
        return {k: v for k, v in counts(scrape(), "backup_repository_uploads_total", "outcome").items() if v}
    expected = {"stored": 4, "not_gpg": 1, "quota": 1, "window_closed": 1, "forbidden": 1, "not_found": 1,
                "unauthenticated": 1, "locked": 1, "too_many_uploads": 1, "timeout": 1, "client_gone": 1}
    assert wait_until(lambda: outcomes() == expected), outcomes()
    text = scrape()
    assert value(text, "backup_repository_upload_size_bytes_count") == 4
    assert value(text, "backup_repository_upload_size_bytes_sum") == sum(sizes)
    assert value(text, "backup_repository_upload_duration_seconds_count") == 4
    assert value(text, "backup_repository_rotation_deleted_versions_total") == 1
    assert value(text, "backup_repository_http_received_bytes_total") >= sum(sizes)
    # failures of authenticated clients, per configured collection; never the unknown one
    assert counts(text, "backup_repository_collection_upload_failures_total", "collection") == {
        "docs": 6, "closed": 1, "open": 1, "older": 0, "iwa-ait": 0}  # from 0 for each configured collection
    # the abandoned upload is counted when its client is gone and leaves the gauge when its clean-up is done
    assert wait_until(lambda: in_progress() == 0)

    # the collection gauges: from the database, a refresh later
    began = time.time()
    text = fresh_scrape(scrape, began)
    docs = collection_values(text, "docs")
    assert docs["backup_repository_collection_versions"] == 3
    assert docs["backup_repository_collection_used_bytes"] == sum(sizes[1:])
    assert docs["backup_repository_collection_max_size_bytes"] == 5 << 20
    assert docs["backup_repository_collection_max_versions"] == 3
    assert began - 60 < docs["backup_repository_collection_latest_version_timestamp_seconds"] <= time.time()
    assert docs["backup_repository_collection_window_ok"] == 1 and docs["backup_repository_collection_size_ok"] == 1
    assert docs["backup_repository_collection_integrity_ok"] == 1 and docs["backup_repository_collection_storage_ok"] == 1
    assert "backup_repository_collection_expected_interval_seconds" not in docs  # no windows
    assert "backup_repository_collection_last_verification_timestamp_seconds" not in docs
    closed = collection_values(text, "closed")  # a window that fires once in four years, no version yet
    assert closed["backup_repository_collection_window_ok"] == 0
    assert closed["backup_repository_collection_versions"] == 0
    assert "backup_repository_collection_latest_version_timestamp_seconds" not in closed
    assert closed["backup_repository_collection_expected_interval_seconds"] >= 4 * 365 * 86400
    assert collection_values(text, "open")["backup_repository_collection_expected_interval_seconds"] == 60 + 120
    assert collection_values(text, "open")["backup_repository_collection_window_ok"] == 1  # a slot is open now

    # the same download, twice: bytes sent
    sent = value(text, "backup_repository_http_sent_bytes_total")
    assert len(server.get(version_path("docs", "/latest"), admin).content) == sizes[-1]
    assert value(scrape(), "backup_repository_http_sent_bytes_total") >= sent + sizes[-1]

    # a verification: one object corrupt, one missing
    stored = backend.storage_path / "docs" / "docs-2.gpg"
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")
    (backend.storage_path / "docs" / "docs-3.gpg").unlink()
    verify = subprocess.run([sys.executable, "-m", "backup_repository", "--verify",
                             f"--config-local-path={outcomes_config.root}", *backend.args],
                            capture_output=True, text=True, env={**base_env(backend.storage_path), **backend.env},
                            cwd=str(ROOT))
    assert verify.returncode == 1, verify.stderr
    verified_at = time.time()
    docs = collection_values(fresh_scrape(scrape, verified_at), "docs")
    assert docs["backup_repository_collection_integrity_ok"] == 0
    assert docs["backup_repository_collection_storage_ok"] == 0
    assert verified_at - 60 < docs["backup_repository_collection_last_verification_timestamp_seconds"] <= verified_at


def test_a_rate_limited_login_is_counted(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config, f"--metrics-token={TOKEN}",
                          "--rate-auth-limit=2")
    answers = [server.request("POST", "/api/stable/auth/login", json={"username": "admin", "password": "x"}
                              ).status_code for _ in range(3)]
    assert answers == [401, 401, 429]
    text = scraper(server)()
    assert counts(text, "backup_repository_logins_total", "result")["rate_limited"] == 1
    assert counts(text, "backup_repository_rate_limited_requests_total", "class") == {
        "auth": 1, "default": 0, "collection_health": 0, "server_health": 0}


def test_collection_gauges_agree_between_two_instances(make_backend, outcomes_config, start_server):
    """Two servers on one PostgreSQL and one store: what one stores, both show, the same."""
    backend = make_backend("postgres", "local")
    flags = (f"--metrics-token={TOKEN}", "--metrics-refresh-interval=0.3s")
    first, second = (start_server(backend, outcomes_config, *flags) for _ in range(2))
    writer = first.login("writer", PASSWORD)
    for index in range(2):
        assert first.request("POST", version_path("docs"), writer,
                             data=pgp_message(os.urandom(5000 + index))).status_code == 200
    assert second.request("POST", version_path("open"), second.login("writer", PASSWORD),
                          data=pgp_message(b"y" * 300)).status_code == 200
    began = time.time()
    views = [fresh_scrape(scraper(server), began) for server in (first, second)]
    for collection in ("docs", "open", "closed", "older"):
        one, other = (collection_values(view, collection) for view in views)
        assert one == other and one, collection
    assert collection_values(views[0], "docs")["backup_repository_collection_versions"] == 2
    assert collection_values(views[1], "open")["backup_repository_collection_used_bytes"] == len(pgp_message(b"y" * 300))
    # the per-instance counters are per instance
    stored = [counts(view, "backup_repository_uploads_total", "outcome")["stored"] for view in views]
    assert stored == [2, 1]
