"""GET /metrics (docs/monitoring.md) against a real server: never public by default, a token or a separate
listener, Prometheus' text format (parsed by prometheus_client's own parser), and a number of series that does
not grow with what clients send."""

import random
import string

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.collections_config import PASSWORD
from tests.support import assert_error, free_port

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
