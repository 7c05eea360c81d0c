"""What an outside probe found (issue: close the holes), one test per finding, against the running server.

Each test fails on the code the probe ran against and passes now; docs/security.md points at them.
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import jwt
import pytest

from backup_repository.security.passwords import encode_password
from tests.integration.collections_config import PASSWORD, collection, version_path, write_collections_config
from tests.support import (
    COLLECTIONS, GO_ADMIN_HASH, JWT_SECRET, USERS, RawUpload, assert_error, pgp_message, wait_until,
)

LOGIN = "/api/stable/auth/login"
WHOAMI = "/api/stable/auth/whoami"
SESSIONS = "/api/stable/auth/token"
LOGOUT = "/api/stable/auth/logout"
RESTRICTED = ("a token limited by an operationsScope or opened with an access key may not view profiles or "
              "manage sessions; log in with the user's own password")
UPLOAD_SCOPE = {"elements": [{"type": "collection", "name": "docs", "roles": ["backupUploader"]}]}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, make_backend):
    return make_backend(request.param, "local")


@pytest.fixture
def sqlite(make_backend):
    return make_backend("sqlite", "local")


@pytest.fixture
def cfg(config):
    write_collections_config(config)
    config.write(COLLECTIONS, "tiny", collection("tiny", one="100K", total="300K"))
    config.write(COLLECTIONS, "big", collection("big", max_count=1, one="64M", total="64M"))
    return config


def forbidden(response):
    assert_error(response, 403, RESTRICTED)


def session_of(server, token) -> str:
    return server.get(WHOAMI, token).json()["data"]["sessionId"]


# --- 1, 2: scoped tokens and access keys may do no global action -----------------------------------------------

def test_a_scoped_token_cannot_manage_sessions_or_read_profiles(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    scoped = server.login("admin", PASSWORD, operationsScope=UPLOAD_SCOPE)
    writer = server.login("writer", PASSWORD)
    writer_session = session_of(server, writer)

    forbidden(server.get(f"{SESSIONS}?userName=writer", scoped))
    forbidden(server.get(SESSIONS, scoped))
    forbidden(server.request("DELETE", f"{LOGOUT}?sessionId={writer_session}", scoped))
    forbidden(server.get("/api/stable/auth/user/writer", scoped))
    forbidden(server.get("/api/stable/auth/user/admin", scoped))
    assert server.get(WHOAMI, writer).status_code == 200  # the other session survived

    # what the token is for still works, and it may end itself
    assert server.request("POST", version_path("docs"), scoped, data=pgp_message(b"x")).status_code == 200
    assert server.get(WHOAMI, scoped).status_code == 200
    own = session_of(server, scoped)
    assert server.request("DELETE", f"{LOGOUT}?sessionId={own}", scoped).json()["data"]["sessionId"] == own
    assert server.get(WHOAMI, scoped).status_code == 401
    # the same user without a scope keeps its full power
    admin = server.login("admin", PASSWORD)
    assert server.get(f"{SESSIONS}?userName=writer", admin).status_code == 200
    assert server.request("DELETE", f"{LOGOUT}?sessionId={writer_session}", admin).status_code == 200


def test_an_access_key_cannot_manage_its_parent_user(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    parent = server.login("keyed", PASSWORD)
    key = server.login("keyed$up", PASSWORD)
    forbidden(server.get(SESSIONS, key))
    forbidden(server.request("DELETE", f"{LOGOUT}?sessionId={session_of(server, parent)}", key))
    forbidden(server.get("/api/stable/auth/user/keyed", key))
    assert server.get(WHOAMI, parent).status_code == 200
    # the parent still sees its sessions, the key's among them; the key may log itself out
    listed = server.get(SESSIONS, parent).json()["data"]["grantedAccesses"]
    assert {s["accessKeyName"] for s in listed} == {"", "up"}
    assert server.request("DELETE", LOGOUT, key).status_code == 200
    assert server.get(WHOAMI, key).status_code == 401


# --- 3: an empty scope is refused, not silently unscoped ---------------------------------------------------------

@pytest.mark.parametrize("scope", [{"elements": []}, {}, [], {"elements": None}, json.dumps({"elements": []})])
def test_an_empty_operations_scope_is_refused(sqlite, cfg, start_server, scope):
    server = start_server(sqlite, cfg)
    response = server.request("POST", LOGIN, json={"username": "admin", "password": PASSWORD,
                                                   "operationsScope": scope})
    assert response.status_code == 400, response.text
    assert response.json() == {"status": False, "data": {}, "error": (
        "operationsScope.elements must not be empty; leave operationsScope out for an unscoped token")}


# --- 4, 5: a session belongs to its credential -------------------------------------------------------------------

def test_changing_a_password_ends_the_sessions_it_opened(backend, cfg, start_server):
    server = start_server(backend, cfg)
    old = server.login("writer", PASSWORD)
    key = server.login("keyed$up", PASSWORD)
    parent = server.login("keyed", PASSWORD)

    cfg.user("writer", encode_password("new-password"))
    message = "the password of this account was changed since this token was issued; log in again"
    assert wait_until(lambda: server.get(WHOAMI, old).status_code == 401, timeout=10)
    assert_error(server.get(WHOAMI, old), 401, message)
    assert server.request("POST", LOGIN, json={"username": "writer", "password": PASSWORD}).status_code == 401
    fresh = server.login("writer", "new-password")
    assert server.get(WHOAMI, fresh).status_code == 200
    # setting the old password back does not revive the old session
    cfg.user("writer", GO_ADMIN_HASH)
    assert wait_until(lambda: server.request("POST", LOGIN, json={"username": "writer", "password": PASSWORD})
                      .status_code == 200, timeout=10)
    assert server.get(WHOAMI, old).status_code == 401
    assert server.get(WHOAMI, fresh).status_code == 401  # opened with the password that was replaced

    # an access key's password: only the key's sessions end
    keyed = (cfg.ns / USERS / "keyed.yaml").read_text()
    up, down = keyed.split("    - name: down")
    up_changed = up[:up.index("    - name: up")] + up[up.index("    - name: up"):].replace(
        GO_ADMIN_HASH, encode_password("new-key-secret"))
    cfg.write(USERS, "keyed", up_changed + "    - name: down" + down)
    key_message = "the password of this access key was changed since this token was issued; log in again"
    assert wait_until(lambda: server.get(WHOAMI, key).status_code == 401, timeout=10)
    assert_error(server.get(WHOAMI, key), 401, key_message)
    assert server.get(WHOAMI, parent).status_code == 200
    assert server.get(WHOAMI, server.login("keyed$up", "new-key-secret")).status_code == 200


def test_a_removed_user_does_not_come_back_with_its_tokens(backend, cfg, start_server):
    server = start_server(backend, cfg)
    token = server.login("writer", PASSWORD)
    key = server.login("keyed$down", PASSWORD)
    saved = (cfg.ns / USERS / "writer.yaml").read_text()
    cfg.remove(USERS, "writer")
    assert wait_until(lambda: server.get(WHOAMI, token).status_code == 401, timeout=10)
    time.sleep(1.5)  # a few reloads: the revocation is written
    cfg.write(USERS, "writer", saved)
    assert wait_until(lambda: server.request("POST", LOGIN, json={"username": "writer", "password": PASSWORD})
                      .status_code == 200, timeout=10)
    assert_error(server.get(WHOAMI, token), 401, "token was revoked or has expired")
    assert server.get(WHOAMI, server.login("writer", PASSWORD)).status_code == 200

    # an access key removed from its user, then restored: the same
    keyed = (cfg.ns / USERS / "keyed.yaml").read_text()
    cfg.write(USERS, "keyed", keyed[:keyed.index("    - name: down")])
    assert wait_until(lambda: server.get(WHOAMI, key).status_code == 401, timeout=10)
    time.sleep(1.5)
    cfg.write(USERS, "keyed", keyed)
    assert wait_until(lambda: server.request("POST", LOGIN, json={"username": "keyed$down", "password": PASSWORD})
                      .status_code == 200, timeout=10)
    assert server.get(WHOAMI, key).status_code == 401


def test_a_user_file_that_fails_to_parse_removes_no_session(sqlite, cfg, start_server):
    """A typo in a GitOps change must not log out every backup job of that user for good."""
    server = start_server(sqlite, cfg)
    token = server.login("writer", PASSWORD)
    saved = (cfg.ns / USERS / "writer.yaml").read_text()
    cfg.write(USERS, "writer", saved + "  roles: [unclosed\n")
    assert wait_until(lambda: server.get(WHOAMI, token).status_code == 401, timeout=10)
    cfg.write(USERS, "writer", saved)
    assert wait_until(lambda: server.get(WHOAMI, token).status_code == 200, timeout=10)


# --- 6, 7, 8, 9: hostile input gets a 4xx in the envelope -----------------------------------------------------

def test_deeply_nested_json_is_a_400(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    deep = '{"username":"a","password":"b","x":' + "[" * 1000 + "]" * 1000 + "}"
    response = server.request("POST", LOGIN, data=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "the JSON document is nested deeper than 32 levels"
    scope = {"elements": [{"type": "collection", "name": "docs", "roles": ["backupUploader"]}]}
    for _ in range(40):
        scope = {"elements": [scope]}
    nested_scope = server.request("POST", LOGIN, json={"username": "admin", "password": PASSWORD,
                                                       "operationsScope": json.dumps(scope)})
    assert nested_scope.status_code == 400 and nested_scope.json()["status"] is False
    assert "Traceback" not in server.log() and "RecursionError" not in server.log()


def test_a_range_of_thousands_of_digits(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    token = server.login("admin", PASSWORD)
    body = pgp_message(b"range")
    assert server.request("POST", version_path("docs"), token, data=body).status_code == 200
    latest = version_path("docs", "/latest")
    beyond = server.get(latest, token, headers={"Range": "bytes=" + "9" * 4301 + "-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(body)}"
    suffix = server.get(latest, token, headers={"Range": "bytes=-" + "9" * 4301})
    assert suffix.status_code == 206 and suffix.content == body
    padded = server.get(latest, token, headers={"Range": "bytes=" + "0" * 4300 + "1-"})
    assert padded.status_code == 206 and padded.content == body[1:]
    assert "Traceback" not in server.log()


def forged(claims: dict) -> str:
    """A token signed with the server's real key (as if the key had leaked, or a bug issued it)."""
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def nested(depth: int):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_hostile_claims_in_a_validly_signed_token_are_401(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    base = {"login": "admin", "accessKeyName": "", "operationsScope": "", "exp": int(time.time()) + 3600}
    deep_scope = base64.b64encode(json.dumps({"elements": nested(900)}).encode()).decode()
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    tokens = [
        forged({**base, "exp": 1e308}),
        forged({**base, "exp": 10 ** 30}),
        forged({**base, "extra": nested(900)}),
        forged({**base, "operationsScope": deep_scope}),
    ]
    # a NaN expiry cannot be written by PyJWT: build that token by hand
    payload = base64.urlsafe_b64encode(b'{"login":"admin","exp":NaN}').rstrip(b"=")
    signing_input = header + b"." + payload
    signature = base64.urlsafe_b64encode(hmac.new(JWT_SECRET.encode(), signing_input, hashlib.sha256).digest())
    tokens.append((signing_input + b"." + signature.rstrip(b"=")).decode())
    for token in tokens:
        response = server.get(WHOAMI, token)
        assert response.status_code == 401, (token[:40], response.text)
        assert response.json()["message"] == "token is invalid"
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", LOGIN, "POST"),
    ("DELETE", "/health", "GET"),
    ("POST", "/ready", "GET"),
    ("PATCH", version_path("docs"), "GET, POST"),
    ("DELETE", version_path("docs", "/latest"), "GET, HEAD"),
    ("POST", WHOAMI, "GET"),
    ("GET", LOGOUT, "DELETE"),
])
def test_405_answers_say_what_is_allowed(sqlite, cfg, start_server, method, path, allowed):
    server = start_server(sqlite, cfg)
    token = server.login("admin", PASSWORD)
    response = server.request(method, path, token)
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == allowed
    assert response.json() == {"status": False, "error": "method not allowed", "data": {}}


# --- 10: the OpenPGP check walks the whole message ---------------------------------------------------------------

def test_uploads_must_be_whole_openpgp_messages(sqlite, cfg, start_server, gpg):
    server = start_server(sqlite, cfg)
    token = server.login("admin", PASSWORD)
    header = "cannot upload version. cannot upload file, cannot copy stream, error: " \
             "first chunk of uploaded data does not contain a valid GPG header"
    footer = "cannot upload version. cannot upload file, cannot copy stream, error: " \
             "end of stream does not contain a valid GPG footer, suspecting a data corruption"
    real = gpg.encrypt(b"the real backup\n" * 100, armor=False)
    armored = gpg.encrypt(b"the real armored backup\n" * 100, armor=True)
    refused = {
        b"\xa5": header,
        b"\xc9" + b"hello, this is plaintext and not encrypted at all\n" * 3: footer,
        b"-----BEGIN PGP MESSAGE-----\n\nplaintext\n-----END PGP MESSAGE-----\n": footer,
        real[:-1]: footer,
        real + b"\x00": footer,
        armored.replace(b"\n=", b"\n=A", 1)[:-1]: footer,
    }
    for body, message in refused.items():
        response = server.request("POST", version_path("docs"), token, data=body)
        assert response.status_code == 400, (body[:20], response.text)
        assert response.json()["error"] == message, body[:20]
    # curl exactly as in the probe
    out = subprocess.run(f"printf '\\xa5' | curl -s --data-binary @- -H 'Authorization: Bearer {token}' "
                         f"{server.url}{version_path('docs')}", shell=True, capture_output=True, check=True).stdout
    assert json.loads(out)["error"] == header
    assert server.request("GET", version_path("docs"), token).json()["data"]["versions"] == []

    for body in (real, armored):
        assert server.request("POST", version_path("docs"), token, data=body).status_code == 200
    assert gpg.decrypt(server.get(version_path("docs", "/latest"), token).content) == b"the real armored backup\n" * 100


# --- 11: every byte of a multipart body counts -------------------------------------------------------------------

def test_a_large_non_file_part_is_refused_at_once(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg)
    token = server.login("admin", PASSWORD)
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall((f"POST {version_path('tiny')} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Type: multipart/form-data; boundary=XYZ\r\n\r\n").encode())

    def chunk(data: bytes):
        sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    chunk(b'--XYZ\r\nContent-Disposition: form-data; name="comment"\r\n\r\n')
    sent, answered = 0, None
    piece = b"c" * 65536
    sock.settimeout(0.05)
    while sent < 20 << 20:
        try:
            chunk(piece)
            sent += len(piece)
            answered = sock.recv(65536)
            if answered:
                break
        except socket.timeout:
            continue
        except OSError:  # the server answered and closed
            break
    sock.settimeout(10)
    if not answered:
        answered = sock.recv(65536)
    assert answered.startswith(b"HTTP/1.1 413"), answered[:200]
    assert sent < 2 << 20, sent  # refused long before the 20 MiB were sent
    sock.close()
    assert server.request("POST", version_path("tiny"), token, data=pgp_message(b"next")).status_code == 200


def test_a_form_without_a_boundary_leaves_nothing_and_blocks_nothing(sqlite, cfg, start_server):
    """Found by schemathesis: the storage writer of such an upload was never closed (a thread blocked for good, a
    temporary file left, and the server could no longer stop)."""
    server = start_server(sqlite, cfg, "--max-uploads-per-user=100")
    token = server.login("admin", PASSWORD)
    for _ in range(70):  # more than the store's transfer threads
        response = server.request("POST", version_path("docs"), token, data=pgp_message(b"x"),
                                  headers={"Content-Type": "multipart/form-data"})
        assert response.status_code == 400
        assert response.json()["error"] == ("cannot read file from multipart/urlencoded form: the Content-Type has "
                                            "no boundary")
    assert sqlite.objects() == []
    assert server.request("POST", version_path("docs"), token, data=pgp_message(b"y")).status_code == 200
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0 and time.monotonic() - stopped < 5


# --- 12: a stalled upload gives its collection back --------------------------------------------------------------

def test_a_stalled_upload_is_aborted_after_the_idle_bound(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg, "--http-upload-idle-timeout=2s")
    token = server.login("admin", PASSWORD)
    raw = RawUpload(server.url, version_path("docs"), token, chunked=True)
    raw.send(pgp_message(b"x" * 50_000)[:-100])
    began = time.monotonic()
    status, body = raw.response(timeout=15)
    assert status == 408 and body["error"] == "Request took too long"
    assert 1.5 < time.monotonic() - began < 8
    raw.close()
    assert server.request("POST", version_path("docs"), token, data=pgp_message(b"y")).status_code == 200
    assert sqlite.objects() == ["docs/docs-1.gpg"]  # the aborted upload's number was given back
    assert sqlite.get_object("docs/docs-1.gpg") == pgp_message(b"y")

    # a slow client that keeps sending is not idle
    slow = RawUpload(server.url, version_path("docs"), token, chunked=True)
    body = pgp_message(b"z" * 3000)
    for index in range(0, len(body), 1000):
        slow.send(body[index:index + 1000])
        time.sleep(1)
    slow.end()
    assert slow.response()[0] == 200
    slow.close()


def test_a_trickled_upload_is_cut_off_by_the_minimum_rate(sqlite, cfg, start_server):
    """A stolen upload key trickles a body one byte every 0.4 s: never silent, so the idle bound never fires; the
    minimum-rate rule (--http-upload-min-rate over --http-upload-rate-window) cuts it with 408 once a whole window
    averaged below the floor, nothing kept, and an administrator's upload — refused (409) while the trickle holds
    the collection — succeeds at once, while the trickler is still sending a body it would have needed minutes for
    (docs/security.md#slow-uploads)."""
    server = start_server(sqlite, cfg, "--http-upload-idle-timeout=2s", "--http-upload-min-rate=100",
                          "--http-upload-rate-window=3s", "--http-upload-timeout=10m")
    stolen = server.login("keyed$up", PASSWORD)
    admin = server.login("admin", PASSWORD)
    trickle = RawUpload(server.url, version_path("docs"), stolen, chunked=True)
    body = pgp_message(b"t" * 1000)
    began = time.monotonic()
    answered = []
    sent = []

    def trickle_on():
        try:
            for octet in body:
                trickle.send(bytes([octet]))
                sent.append(octet)
                time.sleep(0.4)
        except OSError:
            answered.append(time.monotonic() - began)  # cut off

    sender = threading.Thread(target=trickle_on, daemon=True)
    sender.start()
    time.sleep(1)
    assert server.request("POST", version_path("docs"), admin, data=pgp_message(b"a")).status_code == 409
    status, answer = trickle.response(timeout=20)
    assert status == 408 and answer["error"] == "Request took too long"
    assert 2.5 < time.monotonic() - began < 10
    # the trickler is still connected, trying to send: the collection is free at once all the same
    response = server.request("POST", version_path("docs"), admin, data=pgp_message(b"admin's backup"))
    assert response.status_code == 200, response.text
    # ... while the trickle runs: its client is still sending (after the 408 the server reads and drops what
    # follows for up to 3 s), with a few bytes of a body that would have taken it minutes
    assert sender.is_alive() and not answered and len(sent) < len(body) // 10, (len(sent), len(body), answered)
    assert sqlite.objects() == [f"docs/docs-{response.json()['data']['version']['versionNumber']}.gpg"]
    assert "less than 100 (--http-upload-min-rate)" in server.log()
    trickle.close()
    sender.join(10)


# --- 13: failed authentication is rate-limited everywhere --------------------------------------------------------

def test_failed_authentications_are_counted_on_every_endpoint(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg, "--rate-auth-limit=10", "--rate-default-limit=1000")
    statuses = [server.request("POST", version_path("docs"), "forged-token", data=pgp_message(b"x")).status_code
                for _ in range(30)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses
    assert server.get(WHOAMI, "forged-token").status_code == 429
    assert server.get("/ready?code=wrong").status_code == 429


def test_wrong_health_codes_are_counted_too(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg, "--rate-auth-limit=5")
    statuses = [server.get("/ready?code=wrong").status_code for _ in range(8)]
    assert statuses == [403] * 5 + [429] * 3


# --- 14: a slow download ends at its timeout; a stop ends it without a traceback ------------------------------

def slow_download(server, token, path):
    parts = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


def read_slowly(sock, seconds: float, rate: int = 50_000):
    """Read at about ``rate`` bytes/second; return (bytes read, seconds until the server ended the connection or
    None when it was still sending at the end)."""
    began, received = time.monotonic(), 0
    sock.settimeout(2)
    while time.monotonic() - began < seconds:
        try:
            data = sock.recv(5000)
        except (ConnectionResetError, socket.timeout):
            return received, time.monotonic() - began
        if not data:
            return received, time.monotonic() - began
        received += len(data)
        time.sleep(len(data) / rate)
    return received, None


def test_a_slow_download_ends_at_the_download_timeout(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg, "--http-download-timeout=3s")
    token = server.login("admin", PASSWORD)
    assert server.request("POST", version_path("big"), token, data=pgp_message(os.urandom(40_000_000))).ok
    sock = slow_download(server, token, version_path("big", "/latest"))
    received, ended = read_slowly(sock, 10)
    sock.close()
    assert ended is not None and ended < 6, (received, ended)
    assert received < 10_000_000
    assert wait_until(lambda: "ended by --http-download-timeout (3s)" in server.log(), timeout=5)
    # the server is fine afterwards
    assert server.get(version_path("docs"), token).status_code == 200


def test_a_stop_ends_a_slow_download_without_a_traceback(sqlite, cfg, start_server):
    server = start_server(sqlite, cfg, "--shutdown-grace=2s")
    token = server.login("admin", PASSWORD)
    assert server.request("POST", version_path("big"), token, data=pgp_message(os.urandom(40_000_000))).ok
    sock = slow_download(server, token, version_path("big", "/latest"))
    read_slowly(sock, 1)
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert time.monotonic() - stopped < 8
    sock.close()
    log = server.log()
    assert "Traceback" not in log and "cannot schedule new futures" not in log, log[-3000:]
