"""Password checks (argon2, 64 MiB each) run off the event loop with bounded concurrency."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

LOGIN = "/api/stable/auth/login"


def test_a_burst_of_logins_does_not_block_other_requests(make_backend, config, start_server):
    server = start_server(make_backend("sqlite", "local"), config, "--password-check-concurrency=2")
    finished = []
    lock = threading.Lock()

    def login(_):
        response = requests.post(server.url + LOGIN, json={"username": "admin", "password": "admin"}, timeout=60)
        with lock:
            finished.append(time.monotonic())
        return response.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(login, i) for i in range(12)]
        time.sleep(0.05)  # the burst is queued on the server's two password threads
        health = requests.get(server.url + "/health", timeout=10)
        health_done = time.monotonic()
        statuses = [f.result() for f in futures]
    assert statuses == [200] * 12
    assert health.status_code == 200
    # twelve checks two at a time take several rounds; /health was answered while they were still queued
    with lock:
        assert health_done < max(finished)
        assert sum(1 for t in finished if t > health_done) >= 4
