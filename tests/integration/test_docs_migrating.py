"""docs/migrating.md#differences lists every difference a user of the Go server meets. This module holds that list
too: for each row, what the Go server sent (from its source, cited) and what this server sends. The row must be in
the document with both texts, and a running server must answer as the row says; a row added, dropped or reworded
on one side only fails here."""

import re
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from tests.integration.collections_config import (
    PASSWORD, STREAM_ERROR, stalled_upload, version_path, write_collections_config,
)
from tests.support import GO_ADMIN_HASH, JWT_SECRET, USERS, pgp_message, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"
LOGIN = "/api/stable/auth/login"
WHOAMI = "/api/stable/auth/whoami"
SESSIONS = "/api/stable/auth/token"
LOGOUT = "/api/stable/auth/logout"
RESTRICTED = ("a token limited by an operationsScope or opened with an access key may not view profiles or manage "
              "sessions; log in with the user's own password")
RFC_3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"

#: row -> (texts of the Go server, texts of this server), each named in the row of the document.
#: The Go texts are those of its source: pkg/http/{auth,collection,main,responses}.go and pkg/health/backupwindow.go
#: of riotkit-org/backup-repository v4, gin-jwt v2.8.0 auth_jwt.go (ErrEmptyCookieToken, ErrForbidden,
#: ErrInvalidSigningAlgorithm, Timeout), golang-jwt v4.2.0 (map_claims.go "Token is expired", hmac.go
#: ErrSignatureInvalid, parser.go), gin v1.7.7 gin.go (default404Body, redirectRequest), gin-limiter fc39b5e90fe7.
ROWS = {
    "no token": (["cookie token is empty"], ["auth header is empty"]),
    "expired token": (["Token is expired"], ["token is expired"]),
    "bad signature": (["signature is invalid", "token contains an invalid number of segments",
                       "invalid signing algorithm"], ["token is invalid"]),
    "revoked token": (["you don't have permission to access this resource"], ["token was revoked or has expired"]),
    "restricted token on global actions": ([], [RESTRICTED]),
    "refresh": (['{"code": 200, "token": ..., "expire": ...}', "you don't have permission to access this resource"],
                ["token", "sessionId", "expire", "msg"]),
    "token lifetime": ([], ["--jwt-expiry", "87600h", "--jwt-expiry=6h"]),
    "deactivated user": (["deactivated: true"],
                         ["incorrect Username or Password", "user account does not exist or is deactivated"]),
    "restrictByIP": ([], ["incorrect Username or Password", "access from this address is not allowed for this user"]),
    "upload stream errors": (["cannot upload version. cannot upload file, cannot copy stream, error: <reason>"], [
        "first chunk of uploaded data does not contain a valid GPG header", "sent empty data",
        "filesize reached allowed limit. Uploaded <n> bytes, allowed to upload only <m> bytes"]),
    "parallel upload": (["cannot upload to same collection in parallel"], []),
    "unknown path": (["404 page not found"], ['{"status": false, "error": "not found", "data": {}}']),
    "wrong method": (["404 page not found"], ["method not allowed", "Allow"]),
    "trailing slash": ([], []),
    "rate limit refusal": ([], ["too many requests, retry later", "Retry-After", "X-RateLimit-Remaining: 0"]),
    "rate limit headers": (["X-RateLimit-Limit", "X-RateLimit-Remaining"], ["X-RateLimit-Reset"]),
    "unknown session in logout": ([], ["cannot find specified session"]),
    "revoking another session": (["sessionId"], ["sessionId"]),
    "unknown user profile": ([], ["cannot find specified user", "no permissions to view that user account"]),
    "collection health checks": (["BackupWindowValidator", "VersionsSizeValidator", "SumOfVersionsValidator"],
                                 ["StorageConsistencyValidator", "IntegrityValidator", "MinimumRetentionValidator"]),
    "times in health messages": (["Latest backup created at: 2024-05-01 02:30:00.123456 +0000 UTC"], [
        "Latest backup created at: 2024-05-01T02:30:00.123456+00:00",
        "cannot find any backup in the collection: no version was uploaded yet"]),
}


def documented_rows() -> dict:
    """name -> the text of its row, from the table of docs/migrating.md#differences."""
    section = DOC.read_text().split("## Every difference you can observe", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 5 and cells[0] not in ("difference", "---"):
            rows[cells[0]] = line
    return rows


def test_every_difference_is_in_the_document_with_both_texts():
    rows = documented_rows()
    assert set(rows) == set(ROWS), "the table and ROWS must name the same differences"
    for name, (go_texts, our_texts) in ROWS.items():
        for text in go_texts + our_texts:
            assert f"`{text}`" in rows[name] or text in rows[name], (name, text)


# --- the running server answers as the rows say ----------------------------------------------------------------

@pytest.fixture
def server(make_backend, config, start_server):
    write_collections_config(config)
    config.user("gone", GO_ADMIN_HASH)
    config.user("office", GO_ADMIN_HASH, extra='  restrictByIP: ["127.0.0.0/8"]\n')
    backend = make_backend("sqlite", "local")
    running = start_server(backend, config, "--rate-server-health-limit=3")
    running.backend, running.config = backend, config
    return running


def error_of(response) -> str:
    body = response.json()
    return body.get("message") or body.get("error")


def login(server, username, **extra):
    return server.request("POST", LOGIN, json={"username": username, "password": PASSWORD, **extra})


def forged(exp_offset: float, secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    now = int(time.time())
    claims = {"login": "admin", "accessKeyName": "", "operationsScope": "", "exp": now + exp_offset,
              "orig_iat": now - 100, "jti": uuid.uuid4().hex}
    with warnings.catch_warnings():  # the keys are short on purpose (the test secret; a wrong one)
        warnings.simplefilter("ignore")
        return jwt.encode(claims, secret, algorithm=algorithm)


def ours(name: str) -> list:
    return ROWS[name][1]


def check_token_failures(server, token):
    whoami = server.get(WHOAMI)
    assert (whoami.status_code, error_of(whoami)) == (401, ours("no token")[0])
    assert error_of(server.get(WHOAMI, forged(-10))) == ours("expired token")[0]
    for bad in (forged(3600, secret="another key"), "not.a-token", forged(3600, algorithm="HS512")):
        answer = server.get(WHOAMI, bad)
        assert (answer.status_code, error_of(answer)) == (401, ours("bad signature")[0])
    revoked = login(server, "admin").json()["data"]["token"]
    assert server.request("DELETE", LOGOUT, revoked).status_code == 200
    answer = server.get(WHOAMI, revoked)
    assert (answer.status_code, error_of(answer)) == (401, ours("revoked token")[0])


def check_restricted_and_sessions(server, token):
    scope = {"elements": [{"type": "collection", "name": "docs", "roles": ["backupDownloader"]}]}
    scoped = login(server, "admin", operationsScope=scope).json()["data"]["token"]
    for path in (SESSIONS, "/api/stable/auth/user/admin"):
        answer = server.get(path, scoped)
        assert (answer.status_code, error_of(answer)) == (403, RESTRICTED)
    refreshed = server.get("/api/stable/auth/refresh_token", token)
    assert refreshed.status_code == 200 and set(refreshed.json()["data"]) == set(ours("refresh"))
    assert server.get(WHOAMI, refreshed.json()["data"]["token"]).status_code == 200
    expire = datetime.fromisoformat(login(server, "admin").json()["data"]["expire"].replace("Z", "+00:00"))
    assert abs(expire - datetime.now(timezone.utc) - timedelta(hours=87600)) < timedelta(minutes=5)

    unknown = server.request("DELETE", LOGOUT + "?sessionId=" + "0" * 64, token)
    assert (unknown.status_code, error_of(unknown)) == (404, ours("unknown session in logout")[0])
    other = login(server, "admin").json()["data"]["sessionId"]
    revoked = server.request("DELETE", LOGOUT + "?sessionId=" + other, token)
    assert revoked.json()["data"]["sessionId"] == other != server.get(WHOAMI, token).json()["data"]["sessionId"]
    reader = login(server, "reader").json()["data"]["token"]
    answer = server.get("/api/stable/auth/user/no-such-user", reader)
    assert (answer.status_code, error_of(answer)) == (403, ours("unknown user profile")[1])
    answer = server.get("/api/stable/auth/user/no-such-user", token)
    assert (answer.status_code, error_of(answer)) == (404, ours("unknown user profile")[0])


def check_configuration_is_enforced(server):
    """deactivated and restrictByIP: a token stops working when the configuration says so, and logins fail."""
    gone = login(server, "gone").json()["data"]["token"]
    office = login(server, "office").json()["data"]["token"]
    server.config.user("gone", GO_ADMIN_HASH, extra="  deactivated: true\n")
    server.config.user("office", GO_ADMIN_HASH, extra='  restrictByIP: ["10.0.0.0/8"]\n')
    for name, token, text in (("deactivated user", gone, ours("deactivated user")[1]),
                              ("restrictByIP", office, ours("restrictByIP")[1])):
        assert wait_until(lambda: server.get(WHOAMI, token).status_code == 401), name
        assert error_of(server.get(WHOAMI, token)) == text
        answer = login(server, "gone" if name == "deactivated user" else "office")
        assert (answer.status_code, error_of(answer)) == (401, ours(name)[0])


def check_uploads(server, token):
    errors = ours("upload stream errors")
    plain = server.request("POST", version_path("docs"), token, data=b"not encrypted\n" * 100)
    assert (plain.status_code, error_of(plain)) == (400, STREAM_ERROR + errors[0])
    empty = server.request("POST", version_path("docs"), token, data=b"")
    assert (empty.status_code, error_of(empty)) == (400, STREAM_ERROR + errors[1])
    large = server.request("POST", version_path("docs"), token, data=pgp_message(b"x" * (4 << 20)))
    pattern = re.escape(STREAM_ERROR + errors[2]).replace("<n>", r"\d+").replace("<m>", r"\d+")
    assert large.status_code == 413 and re.fullmatch(pattern, error_of(large))
    first = stalled_upload(server, server.backend, token, "docs", 1000)
    second = server.request("POST", version_path("docs"), token, data=pgp_message(b"y"))
    assert (second.status_code, error_of(second)) == (409, ROWS["parallel upload"][0][0])
    first.close()


def check_routing(server, token):
    unknown = server.get("/no/such/path")
    assert unknown.status_code == 404 and unknown.text == ours("unknown path")[0]
    wrong = server.request("DELETE", "/api/stable/repository/collection", token)
    assert (wrong.status_code, error_of(wrong), wrong.headers["Allow"]) == (405, ours("wrong method")[0], "GET")
    assert server.get(WHOAMI + "/", token, allow_redirects=False).status_code == 301
    moved = server.request("POST", LOGIN + "/", allow_redirects=False)
    assert (moved.status_code, moved.headers["Location"]) == (308, LOGIN)


def check_rate_limits(server):
    answers = [server.get("/health") for _ in range(3)]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == ["2", "1", "0"]
    assert all(int(answer.headers[ours("rate limit headers")[0]]) > time.time() for answer in answers)
    refused = server.get("/health")
    assert (refused.status_code, error_of(refused)) == (429, ours("rate limit refusal")[0])
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Limit" in server.get(WHOAMI, "not.a-token").headers  # a 401 of a bad token shows it too


def check_collection_health(server, token):
    health = "/api/stable/repository/collection/closed/health"
    empty = server.get(health).json()["data"]["health"]
    assert empty[0]["message"] == ours("times in health messages")[1]
    assert server.request("POST", version_path("closed"), token, data=pgp_message(b"z")).status_code == 200
    checks = server.get(health).json()["data"]["health"]
    assert [check["name"] for check in checks] == (ROWS["collection health checks"][0]
                                                   + ours("collection health checks")[:2])
    assert re.fullmatch(r".*Latest backup created at: " + RFC_3339, checks[0]["message"]), checks[0]["message"]


def test_the_server_answers_as_the_rows_say(server):
    token = server.login("admin", PASSWORD)
    check_token_failures(server, token)
    check_restricted_and_sessions(server, token)
    check_configuration_is_enforced(server)
    check_uploads(server, token)
    check_routing(server, token)
    check_rate_limits(server)
    check_collection_health(server, token)
