"""Attacks against the running server (issue: security hardening). Each test would fail if its protection were
removed; docs/security.md maps every threat to the test that proves it."""

import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.collections_config import PASSWORD, write_collections_config, version_path
from tests.support import GO_ADMIN_HASH, HEALTH_KEY, HEALTH_PROBER, RawUpload, pgp_message

LOGIN = "/api/stable/auth/login"
WHOAMI = "/api/stable/auth/whoami"
TOO_MANY = {"status": False, "error": "too many requests, retry later", "data": {}}



@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, make_backend):
    return make_backend(request.param, "local")


@pytest.fixture
def cfg(config):
    write_collections_config(config)
    config.user("office", GO_ADMIN_HASH, roles=["backupDownloader"], extra="""  restrictByIP: ["10.0.0.0/8", "2001:db8::/32"]
  accessKeys:
    - name: branch
      password: "%s"
      restrictByIP: ["10.20.0.0/16"]
      objects:
        - name: docs
          type: collection
          roles: [backupDownloader]
""" % GO_ADMIN_HASH)
    return config


def login(server, username, forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return server.request("POST", LOGIN, json={"username": username, "password": PASSWORD}, headers=headers)


# --- rate limits -----------------------------------------------------------------------------------------------

def assert_429(response):
    assert response.status_code == 429, response.text
    assert response.json() == TOO_MANY
    assert int(response.headers["Retry-After"]) >= 1


def test_rate_limits_per_endpoint_class(backend, cfg, start_server):
    server = start_server(backend, cfg, "--rate-default-limit=5", "--rate-auth-limit=3",
                          "--rate-collection-health-limit=4", "--rate-server-health-limit=6")
    token = login(server, "admin").json()["data"]["token"]
    assert [login(server, "admin").status_code for _ in range(2)] == [200, 200]
    assert_429(login(server, "admin"))  # the 4th login within the minute

    statuses = [server.get(WHOAMI, token).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert_429(server.get(WHOAMI, token))
    time.sleep(1.1)  # 5 per second: a second later there is room again
    assert server.get(WHOAMI, token).status_code == 200

    health = "/api/stable/repository/collection/docs/health"
    assert [server.get(health).status_code for _ in range(4)] == [200] * 4
    assert_429(server.get(health))
    assert [server.get("/health").status_code for _ in range(6)] == [200] * 6
    assert_429(server.get("/health"))


RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def shown_budget(response):
    """(limit, remaining, reset) of an answer's X-RateLimit-* headers."""
    return tuple(int(response.headers[name]) for name in RATE_HEADERS)


def test_answers_show_the_budget_they_drew_from(backend, cfg, start_server):
    """The Go server's limiter sends X-RateLimit-Limit (requests per period) and X-RateLimit-Remaining (whole
    requests left after this one) on every answer past it; ours too, plus X-RateLimit-Reset (docs/api.md)."""
    server = start_server(backend, cfg, "--rate-default-limit=5", "--rate-auth-limit=4",
                          "--rate-collection-health-limit=3", "--rate-server-health-limit=6")
    before = time.time()
    first = login(server, "admin")
    token = first.json()["data"]["token"]
    limit, remaining, reset = shown_budget(first)
    assert (limit, remaining) == (4, 3)
    assert before + 14 <= reset <= time.time() + 16  # one of 4 per minute is back in 15 s
    wrong = server.request("POST", LOGIN, json={"username": "admin", "password": "wrong"})
    assert wrong.status_code == 401  # the login itself failed: the budget was drawn all the same, as in Go
    assert shown_budget(wrong)[:2] == (4, 2)
    assert shown_budget(wrong)[2] >= reset
    assert shown_budget(login(server, "admin"))[:2] == (4, 1)
    assert shown_budget(login(server, "admin"))[:2] == (4, 0)
    spent = login(server, "admin")
    assert_429(spent)  # our 429 keeps its envelope and Retry-After, and says the budget too
    assert shown_budget(spent)[:2] == (4, 0)
    assert shown_budget(spent)[2] >= time.time() + 55

    # every answer past the limit shows it, an error too (Go's limiter runs before the handler)
    whoami = server.get(WHOAMI, token)
    assert whoami.status_code == 200 and shown_budget(whoami)[0] == 5
    assert 0 <= shown_budget(whoami)[1] <= 4
    unknown = server.get(version_path("no-such-collection"), token)
    assert unknown.status_code == 404 and shown_budget(unknown)[0] == 5

    health = "/api/stable/repository/collection/docs/health"
    answers = [server.get(health) for _ in range(3)]
    assert [shown_budget(answer)[:2] for answer in answers] == [(3, 2), (3, 1), (3, 0)]
    resets = [shown_budget(answer)[2] for answer in answers]
    assert resets == sorted(resets)  # an emptier bucket is full later
    assert_429(server.get(health))

    # /health and /ready share one budget, as in Go
    probes = [server.get("/health"), server.get("/ready", headers={"Authorization": HEALTH_KEY}),
              server.get("/health")]
    assert [shown_budget(answer)[:2] for answer in probes] == [(6, 5), (6, 4), (6, 3)]

    # uploads have no request-rate limit, in Go neither: nothing to show
    upload = server.request("POST", version_path("docs"), token, data=pgp_message(b"x"))
    assert upload.status_code == 200
    assert not set(RATE_HEADERS) & set(upload.headers)


def test_uploads_have_no_request_rate_but_a_per_user_bound(backend, cfg, start_server):
    server = start_server(backend, cfg, "--rate-default-limit=1", "--max-uploads-per-user=2")
    token = login(server, "admin").json()["data"]["token"]
    for _ in range(4):  # 4 uploads in a row at 1 request/second for everything else
        assert server.request("POST", version_path("docs"), token, data=pgp_message(b"x")).status_code == 200

    first = RawUpload(server.url, version_path("open"), token, chunked=True)
    first.send(pgp_message(b"a" * 1000)[:-100])
    second = RawUpload(server.url, version_path("older"), token, chunked=True)
    second.send(pgp_message(b"b" * 1000)[:-100])
    time.sleep(0.5)
    third = server.request("POST", version_path("docs"), token, data=pgp_message(b"c"))
    assert third.status_code == 429
    assert third.json()["error"] == "too many uploads in progress for this user, retry when one has finished"
    assert third.headers["Retry-After"]
    # another user is not affected
    writer = login(server, "writer").json()["data"]["token"]
    assert server.request("POST", version_path("docs"), writer, data=pgp_message(b"w")).status_code == 200
    first.send(pgp_message(b"a" * 1000)[-100:])
    first.end()
    assert first.response()[0] == 200
    first.close()
    assert server.request("POST", version_path("docs"), token, data=pgp_message(b"d")).status_code == 200
    second.close()


# --- client addresses ------------------------------------------------------------------------------------------

def test_forwarded_headers_from_an_untrusted_peer_change_nothing(backend, cfg, start_server):
    server = start_server(backend, cfg, "--rate-auth-limit=3")
    # restrictByIP 10.0.0.0/8: claiming to be 10.1.2.3 does not help
    refused = login(server, "office", forwarded="10.1.2.3")
    assert refused.status_code == 401
    assert server.request("POST", LOGIN, json={"username": "office", "password": PASSWORD},
                          headers={"X-Real-IP": "10.1.2.3"}).status_code == 401
    # a rotating X-Forwarded-For does not reset the rate limit (the two above counted)
    assert login(server, "admin", forwarded="10.9.9.9").status_code == 200
    assert_429(login(server, "admin", forwarded="10.9.9.10"))
    # and the session records the real peer
    server2 = start_server(backend, cfg)
    token = login(server2, "admin", forwarded="203.0.113.7").json()["data"]["token"]
    assert server2.get(WHOAMI, token).json()["data"]["grantedAccess"]["requesterIP"] == "127.0.0.1"


def test_the_login_budget_of_an_ipv6_client_is_its_64(backend, cfg, start_server):
    """Any IPv6 host holds a whole /64: wrong logins from 25 of its addresses share one budget (--rate-ipv6-prefix,
    64), another /64 has its own, and an IPv4 client is still its address."""
    server = start_server(backend, cfg, "--trusted-proxies=127.0.0.1/32", "--rate-auth-limit=5")

    def wrong(address):
        return server.request("POST", LOGIN, json={"username": "admin", "password": "wrong"},
                              headers={"X-Forwarded-For": address})

    answers = [wrong(f"2001:db8:1:2::{index:x}").status_code for index in range(1, 26)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, answers
    assert wrong("2001:db8:1:3::1").status_code == 401  # the next /64
    assert [wrong(f"198.51.100.{index}").status_code for index in range(1, 8)] == [401] * 7  # one address each
    assert "the auth budget of 2001:db8:1:2::/64 is spent" in server.log()


def test_trusted_proxy_forwards_the_client_address(backend, cfg, start_server):
    server = start_server(backend, cfg, "--trusted-proxies=127.0.0.1/32, 192.0.2.0/24", "--rate-auth-limit=3")
    # the right-most address that is not a trusted proxy is the client
    response = login(server, "office", forwarded="198.51.100.1, 10.1.2.3, 192.0.2.10")
    assert response.status_code == 200, response.text
    token = response.json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.1.2.3"}
    whoami = requests.get(server.url + WHOAMI, headers=headers, timeout=10).json()["data"]
    assert whoami["grantedAccess"]["requesterIP"] == "10.1.2.3"
    # the same token from an address outside restrictByIP: 401 on every request
    outside = requests.get(server.url + WHOAMI, timeout=10,
                           headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "192.168.1.1"})
    assert outside.status_code == 401
    assert outside.json()["message"] == "access from this address is not allowed for this user"
    # IPv6 allow-list entries work too, and X-Real-IP when there is no X-Forwarded-For
    assert server.request("POST", LOGIN, json={"username": "office", "password": PASSWORD},
                          headers={"X-Real-IP": "2001:db8::5"}).status_code == 200
    # an access key's restrictByIP narrows its user's
    assert login(server, "office$branch", forwarded="10.20.1.1").status_code == 200
    assert login(server, "office$branch", forwarded="10.30.1.1").status_code == 401
    # rate limits follow the forwarded client: a different client has its own bucket
    for _ in range(3):
        login(server, "admin", forwarded="198.51.100.50")
    assert_429(login(server, "admin", forwarded="198.51.100.50"))
    assert login(server, "admin", forwarded="198.51.100.51").status_code == 200


# --- brute force and exhaustion --------------------------------------------------------------------------------

def test_logins_take_as_long_for_unknown_users(backend, cfg, start_server):
    """The password is checked against a dummy hash when the user does not exist: without it, a refusal for an
    unknown user would take about a millisecond instead of the ~50 ms of an argon2 check."""
    server = start_server(backend, cfg)

    def timed(username):
        began = time.perf_counter()
        response = server.request("POST", LOGIN, json={"username": username, "password": "wrong"})
        assert response.status_code == 401
        return time.perf_counter() - began

    timed("admin")  # warm up
    known = statistics.median(timed("admin") for _ in range(7))
    unknown = statistics.median(timed("no-such-user") for _ in range(7))
    assert unknown > known / 3, (known, unknown)


def test_a_login_flood_is_bounded(backend, cfg, start_server):
    server = start_server(backend, cfg, "--password-check-concurrency=2", "--password-check-queue=8")
    pid = server.proc.pid
    peak = [0.0]
    stop = threading.Event()

    def sample_rss():
        while not stop.is_set():
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.05)

    def attempt(_):
        return requests.post(server.url + LOGIN, json={"username": "admin", "password": PASSWORD}, timeout=60)

    # /health is probed from a process of its own, so that the 50 client threads here cannot delay the probes
    prober = subprocess.Popen([sys.executable, "-c", HEALTH_PROBER, server.url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert prober.stdout.readline().strip() == "probing"
    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(attempt, range(50)))
    stop.set()
    sampler.join()
    health_times = [float(value) for value in prober.communicate("stop\n", timeout=30)[0].split()]

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 10 and statuses.count(503) >= 1, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["error"] == "the server is busy checking other logins, retry in a moment"
    assert busy.headers["Retry-After"]
    print(f"health max {max(health_times) * 1000:.1f} ms, rss peak {peak[0]:.0f} MiB", file=sys.stderr)
    assert len(health_times) >= 5 and max(health_times) < 0.1, health_times
    assert peak[0] < 300, peak[0]


def test_bodies_and_headers_are_capped(backend, cfg, start_server):
    server = start_server(backend, cfg)
    big = b'{"username": "admin", "password": "' + b"x" * (70 << 10) + b'"}'
    declared = server.request("POST", LOGIN, data=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json() == {"status": False, "error": "the request body is larger than 65536 bytes", "data": {}}
    chunked = server.request("POST", LOGIN, data=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]))
    assert chunked.status_code == 413 and chunked.json()["status"] is False
    # headers beyond 16 KiB: refused, the connection closed, the server unharmed
    with _any_outcome():
        huge = server.get(WHOAMI, headers={"X-Filler": "y" * (32 << 10)})
        assert huge.status_code in (400, 431)
    assert server.get("/health").status_code == 200
    assert "Traceback" not in server.log()


class _any_outcome:
    """A refused oversized header may surface as a 400 or as a closed connection, depending on timing."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, requests.ConnectionError)


def test_slow_clients_are_cut_off(backend, cfg, start_server):
    server = start_server(backend, cfg, "--http-idle-timeout=2s")
    parts = urlsplit(server.url)

    def closed_within(payload: bytes, seconds: float) -> bool:
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(payload)
        sock.settimeout(seconds)
        began = time.monotonic()
        try:
            while sock.recv(65536):
                pass
            return time.monotonic() - began < seconds
        except socket.timeout:
            return False
        finally:
            sock.close()

    # headers that never finish, and a login body that never finishes
    assert closed_within(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", 6)
    assert closed_within(b"POST /api/stable/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", 6)
    assert server.get("/health").status_code == 200


# --- hostile input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("collection", ["..", "...", "%2e%2e", "..%2f..%2fetc", "DOCS", "docs%00", "-docs", "d" * 300,
                                        "%c3%a9t%c3%a9", "docs.", "a%20b", "iwa-ait%2f..%2fdocs"])
def test_hostile_collection_ids_are_404(backend, cfg, start_server, collection):
    server = start_server(backend, cfg)
    token = login(server, "admin").json()["data"]["token"]
    expected = {"status": False, "error": "cannot find specified collection", "data": {}}
    base = f"/api/stable/repository/collection/{collection}"
    for method, suffix in (("POST", "/version"), ("GET", "/version"), ("GET", "/version/latest"),
                           ("HEAD", "/version/1"), ("GET", "/health")):
        response = server.request(method, base + suffix, token, data=pgp_message(b"x") if method == "POST" else None)
        assert response.status_code == 404, (method, suffix, response.text)
        if method != "HEAD":
            body = response.json()
            assert body == expected or body == {"status": False, "error": "not found", "data": {}}
    assert [p for p in backend.objects() if not p.startswith("docs/")] == []


def test_hostile_user_names_and_selectors(backend, cfg, start_server):
    server = start_server(backend, cfg)
    admin = login(server, "admin").json()["data"]["token"]
    for name in ("..", "ADMIN", "admin%00", "a" * 400, "%24", "admin$", "$admin"):
        response = server.get(f"/api/stable/auth/user/{name}", admin)
        assert response.status_code in (403, 404), (name, response.text)
        assert login(server, name).status_code == 401
    for selector in ("..", "v-1", "1e3", "0x10", "latest%2f..", "v" * 100, "%ff"):
        response = server.get(f"/api/stable/repository/collection/docs/version/{selector}", admin)
        assert response.status_code in (400, 404), (selector, response.text)
        assert response.json()["status"] is False
    assert "Traceback" not in server.log()


def test_invalid_names_in_the_configuration_are_refused(backend, config, start_server):
    config.user("Bad_Name", GO_ADMIN_HASH, roles=["systemAdmin"])
    config.user("keys", GO_ADMIN_HASH, extra="""  accessKeys:
    - name: "../../etc"
      password: "%s"
""" % GO_ADMIN_HASH)
    server = start_server(backend, config)
    assert login(server, "Bad_Name").status_code == 401
    assert login(server, "keys$../../etc").status_code == 401
    log = server.log()
    assert "Bad_Name" in log and "is not a valid name" in log and "is not a valid access key name" in log


# --- secrets never reach logs or answers ------------------------------------------------------------------------

def test_logs_and_answers_never_carry_secrets(backend, cfg, start_server, tmp_path):
    """A full session at debug level: logins (good and bad), uploads, downloads, health with codes, sessions,
    logout. Then the log is searched for every secret that was used."""
    server = start_server(backend, cfg, "--log-level=debug")
    secrets = {"jwt secret": "test-secret-key-that-is-long-enough-for-hs256", "health key": "health-key-for-tests",
               "password hash": GO_ADMIN_HASH, "wrong password": "Wr0ng-Pa55word-Attempt",
               "collection health code": "changeme-health-code"}
    answers = []
    good = login(server, "admin")
    token = good.json()["data"]["token"]
    secrets["token"] = token
    answers.append(server.request("POST", LOGIN, json={"username": "admin", "password": secrets["wrong password"]}))
    answers.append(server.request("POST", LOGIN, data={"username": "admin$nokey", "password": secrets["wrong password"]}))
    answers.append(server.request("POST", version_path("docs"), token, data=pgp_message(b"secret-free data")))
    answers.append(server.get(version_path("docs") + "?token=" + token))
    answers.append(server.get("/ready", headers={"Authorization": secrets["health key"]}))
    answers.append(server.get("/ready?code=" + secrets["health key"]))
    answers.append(server.get("/ready?code=not-" + secrets["health key"]))
    answers.append(server.get("/api/stable/repository/collection/iwa-ait/health?code=" + secrets["collection health code"]))
    answers.append(server.get("/api/stable/repository/collection/iwa-ait/health?code=wrong" + secrets["collection health code"]))
    answers.append(server.get(WHOAMI, token + "x"))
    answers.append(server.get("/api/stable/auth/token", token))
    answers.append(server.request("DELETE", "/api/stable/auth/logout", token))
    answers.append(server.get(WHOAMI, token))
    log = server.log()
    assert "login refused" in log and "GET /ready" in log  # the log did record these requests
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} appears in the server log"
    for response in answers:
        for what, secret in secrets.items():
            if what != "token":
                assert secret not in response.text, f"the {what} appears in an answer to {response.url}"


def test_every_answer_carries_the_safety_headers(backend, cfg, start_server):
    server = start_server(backend, cfg)
    token = login(server, "admin").json()["data"]["token"]
    server.request("POST", version_path("docs"), token, data=pgp_message(b"x"))
    for method, path, auth in (("GET", "/health", None), ("GET", "/ready", None), ("GET", "/nope", None),
                               ("POST", LOGIN, None), ("GET", WHOAMI, token), ("GET", WHOAMI, "bad"),
                               ("GET", version_path("docs"), token), ("GET", version_path("docs") + "/1", token),
                               ("GET", version_path("docs") + "/9", token), ("PUT", "/health", None)):
        response = server.request(method, path, auth)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Cache-Control") == "no-store", path
