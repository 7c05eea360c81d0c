"""The authentication API of docs/api.md against a real server, on every database × storage backend."""

import base64
import json
import subprocess
import time

import jwt
import pytest

from backup_repository.security.passwords import encode_password
from backup_repository.security.tokens import hash_token
from tests.support import GO_ADMIN_HASH, JWT_SECRET, USERS, assert_error, wait_until

LOGIN = "/api/stable/auth/login"


@pytest.fixture
def config(config):
    """The example configuration plus a few test users (conftest's ``api`` starts the server on it)."""
    config.user("manager", encode_password("manager"), roles=["usersManager"])
    config.user("plain", encode_password("plain"), roles=["backupDownloader"])
    config.user("gone", encode_password("gone"), roles=[], extra="  deactivated: true\n")
    return config


def test_login_json_and_token_shape(api):
    response = api.request("POST", LOGIN, json={"username": "admin", "password": "admin"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] is True
    data = body["data"]
    assert set(data) == {"token", "sessionId", "expire", "msg"}
    assert data["msg"] == "Use this sessionId to revoke this token anytime"
    assert data["sessionId"] == hash_token(data["token"])
    assert time.strptime(data["expire"], "%Y-%m-%dT%H:%M:%SZ")
    claims = jwt.decode(data["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["login"] == "admin" and claims["accessKeyName"] == "" and claims["operationsScope"] == ""
    assert {"exp", "orig_iat", "jti"} <= set(claims)
    assert claims["exp"] - claims["orig_iat"] == 87600 * 3600


def test_login_form_and_curl_dash_d_json(api):
    form = api.request("POST", LOGIN, data={"username": "admin", "password": "admin"})
    assert form.status_code == 200 and form.json()["data"]["token"]
    # curl -d '{...}' sends JSON labelled application/x-www-form-urlencoded: it must still log in
    out = subprocess.run(["curl", "-s", "-X", "POST", "-d", '{"username":"admin","password":"admin"}',
                          api.url + LOGIN], capture_output=True, check=True).stdout
    assert json.loads(out)["data"]["token"]
    text_plain = api.request("POST", LOGIN, data='{"username":"admin","password":"admin"}',
                             headers={"Content-Type": "text/plain"})
    assert text_plain.status_code == 200


def test_two_logins_in_the_same_second_get_different_tokens(api):
    tokens = {api.login("admin", "admin") for _ in range(3)}
    assert len(tokens) == 3


@pytest.mark.parametrize("username, password", [
    ("admin", "wrong"), ("nobody", "admin"), ("gone", "gone"), ("admin$nokey", "admin"), ("uploader$ci", "uploader"),
])
def test_bad_credentials(api, username, password):
    assert_error(api.request("POST", LOGIN, json={"username": username, "password": password}), 401,
                 "incorrect Username or Password")


@pytest.mark.parametrize("kwargs", [
    {"json": {"username": "admin"}}, {"json": {"password": "admin"}}, {"json": {}},
    {"json": {"username": 5, "password": "admin"}}, {"json": ["admin", "admin"]},
    {"data": "{not json"}, {"data": b"\xff\xfe\x00"}, {"data": ""},
    {"data": {"username": "admin"}},
    {"data": "username=admin", "headers": {"Content-Type": "application/octet-stream"}},
])
def test_missing_or_unparsable_credentials(api, kwargs):
    assert_error(api.request("POST", LOGIN, **kwargs), 401, "missing Username or Password")


def test_access_key_login_and_malformed_scope(api):
    token = api.login("uploader$ci", "ci-secret")
    whoami = api.get("/api/stable/auth/whoami", token).json()["data"]
    assert whoami["grantedAccess"]["accessKeyName"] == "ci" and whoami["grantedAccess"]["user"] == "uploader"
    assert_error(api.request("POST", LOGIN, json={"username": "admin", "password": "admin", "operationsScope": "nope"}),
          400, "invalid operationsScope: Expecting value: line 1 column 1 (char 0)")


def test_scoped_token_carries_its_scope(api):
    scope = {"elements": [{"type": "collection", "name": "iwa-ait", "roles": ["backupDownloader"]}]}
    token = api.login("admin", "admin", operationsScope=scope)
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert json.loads(base64.b64decode(claims["operationsScope"])) == scope
    assert api.get("/api/stable/auth/whoami", token).status_code == 200


def test_token_accepted_from_header_query_and_cookie(api):
    token = api.login("admin", "admin")
    assert api.get("/api/stable/auth/whoami", token).status_code == 200
    assert api.get(f"/api/stable/auth/whoami?token={token}").status_code == 200
    assert api.get("/api/stable/auth/whoami", cookies={"jwt": token}).status_code == 200


def forged(claims, key=JWT_SECRET, algorithm="HS256"):
    return jwt.encode(claims, key, algorithm=algorithm)


def test_garbage_and_forged_tokens_are_401(api):
    good = api.login("admin", "admin")
    claims = jwt.decode(good, JWT_SECRET, algorithms=["HS256"])
    header, payload, signature = good.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    tampered = base64.urlsafe_b64encode(b'{"login":"root"}').rstrip(b"=").decode()
    cases = {
        "": "auth header is empty",
        "garbage": "token is invalid",
        "a.b.c": "token is invalid",
        f"{unsigned}.{payload}.": "token is invalid",
        forged(claims, key="another-key-that-is-also-long-enough-here"): "token is invalid",
        forged(claims, algorithm="HS512"): "token is invalid",
        f"{header}.{tampered}.{signature}": "token is invalid",
        forged({**claims, "exp": int(time.time()) - 10}): "token is expired",
        forged({**claims, "operationsScope": "!!!notbase64"}): "token is invalid",
        forged({**claims, "jti": "other"}): "token was revoked or has expired",  # valid signature, no session
    }
    for token, message in cases.items():
        answer = api.get("/api/stable/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        assert_error(answer, 401, message)
        # RFC 9110 wants a challenge on every 401; the Go server's, so that clients see the same
        assert answer.headers["WWW-Authenticate"] == "JWT realm=backup-repository"
    assert api.get("/api/stable/auth/whoami").headers["WWW-Authenticate"] == "JWT realm=backup-repository"
    assert "WWW-Authenticate" not in api.get("/api/stable/auth/whoami", good).headers


def test_whoami(api):
    token = api.login("admin", "admin")
    data = api.get("/api/stable/auth/whoami", token).json()["data"]
    assert data["email"] == "admin@example.org" and data["permissions"] == ["systemAdmin"]
    assert data["sessionId"] == hash_token(token)
    session = data["grantedAccess"]
    assert set(session) == {"id", "expiresAt", "deactivated", "description", "requesterIP", "user",
                            "accessKeyName", "CreatedAt", "UpdatedAt", "DeletedAt"}
    assert session["id"] == hash_token(token) and session["description"] == "Login"
    assert session["requesterIP"] == "127.0.0.1" and session["user"] == "admin" and session["DeletedAt"] is None
    assert session["deactivated"] is False


def test_user_profiles(api):
    plain, manager, admin = api.login("plain", "plain"), api.login("manager", "manager"), api.login("admin", "admin")
    own = api.get("/api/stable/auth/user/plain", plain)
    assert own.status_code == 200 and own.json()["data"] == {"email": "plain@example.org",
                                                             "permissions": ["backupDownloader"]}
    assert_error(api.get("/api/stable/auth/user/admin", plain), 403, "no permissions to view that user account")
    assert_error(api.get("/api/stable/auth/user/nobody", plain), 403, "no permissions to view that user account")
    assert api.get("/api/stable/auth/user/admin", manager).json()["data"]["permissions"] == ["systemAdmin"]
    assert api.get("/api/stable/auth/user/plain", admin).status_code == 200
    assert_error(api.get("/api/stable/auth/user/nobody", manager), 404, "cannot find specified user")
    # a role is echoed as the document spells it (the Go examples' usersManager), and means the same
    assert api.get("/api/stable/auth/whoami", manager).json()["data"]["permissions"] == ["usersManager"]
    assert api.get("/api/stable/auth/user/manager", admin).json()["data"]["permissions"] == ["usersManager"]


def test_session_listing(api):
    first = api.login("plain", "plain")
    second = api.login("plain", "plain")
    admin = api.login("admin", "admin")
    listed = api.get("/api/stable/auth/token", second).json()["data"]["grantedAccesses"]
    assert [s["id"] for s in listed] == [hash_token(second), hash_token(first)]  # newest first
    assert api.get("/api/stable/auth/token?userName=plain", second).status_code == 200
    assert_error(api.get("/api/stable/auth/token?userName=admin", second), 403, "no permissions to act as other user")
    as_admin = api.get("/api/stable/auth/token?userName=plain", admin).json()["data"]["grantedAccesses"]
    assert len(as_admin) == 2


def test_session_listing_is_capped_at_100(api):
    token = api.login("admin", "admin")
    for _ in range(101):
        assert api.get("/api/stable/auth/refresh_token", token).status_code == 200
    assert len(api.get("/api/stable/auth/token", token).json()["data"]["grantedAccesses"]) == 100


def test_logout_own_and_others(api):
    plain1, plain2, other, admin = (api.login("plain", "plain"), api.login("plain", "plain"),
                                    api.login("manager", "manager"), api.login("admin", "admin"))
    response = api.request("DELETE", "/api/stable/auth/logout", plain1)
    assert response.json() == {"status": True, "data": {"message": "JWT was revoked", "sessionId": hash_token(plain1)}}
    assert_error(api.get("/api/stable/auth/whoami", plain1), 401, "token was revoked or has expired")
    # the revoked session stays listed (audit), marked deactivated
    listed = api.get("/api/stable/auth/token", plain2).json()["data"]["grantedAccesses"]
    assert {s["id"]: s["deactivated"] for s in listed}[hash_token(plain1)] is True

    assert_error(api.request("DELETE", f"/api/stable/auth/logout?sessionId={hash_token(other)}", plain2), 403,
          "you don't have permissions to revoke session of other user")
    assert api.get("/api/stable/auth/whoami", other).status_code == 200
    assert_error(api.request("DELETE", "/api/stable/auth/logout?sessionId=" + "0" * 64, admin), 404,
          "cannot find specified session")
    revoked = api.request("DELETE", f"/api/stable/auth/logout?sessionId={hash_token(other)}", admin)
    assert revoked.json()["data"]["sessionId"] == hash_token(other)
    assert_error(api.get("/api/stable/auth/whoami", other), 401, "token was revoked or has expired")
    assert api.get("/api/stable/auth/whoami", admin).status_code == 200


def test_refreshed_token_works_and_is_a_new_session(api):
    scope = {"elements": [{"type": "collection", "name": "iwa-ait", "roles": ["backupUploader"]}]}
    token = api.login("uploader$ci", "ci-secret", operationsScope=scope)
    refreshed = api.get("/api/stable/auth/refresh_token", token)
    assert refreshed.status_code == 200
    data = refreshed.json()["data"]
    assert data["token"] != token and data["sessionId"] == hash_token(data["token"])
    claims = jwt.decode(data["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["login"] == "uploader" and claims["accessKeyName"] == "ci"
    assert json.loads(base64.b64decode(claims["operationsScope"])) == scope
    assert api.get("/api/stable/auth/whoami", data["token"]).status_code == 200
    assert_error(api.get("/api/stable/auth/refresh_token"), 401, "auth header is empty")


def test_removed_or_deactivated_user_loses_live_tokens(api, config):
    token = api.login("plain", "plain")
    config.user("plain", encode_password("plain"), roles=["backupDownloader"], extra="  deactivated: true\n")
    assert wait_until(lambda: api.get("/api/stable/auth/whoami", token).status_code == 401)
    assert_error(api.get("/api/stable/auth/whoami", token), 401, "user account does not exist or is deactivated")
    manager = api.login("manager", "manager")
    config.remove(USERS, "manager")
    assert wait_until(lambda: api.get("/api/stable/auth/whoami", manager).status_code == 401)


def test_unknown_paths_and_methods_get_the_json_envelope(api):
    assert_error(api.get("/nope"), 404, "not found")
    assert_error(api.get("/api/stable/auth/login"), 405, "method not allowed")
    assert_error(api.request("PUT", "/health"), 405, "method not allowed")


def test_no_response_is_a_500_or_a_traceback(api):
    token = api.login("admin", "admin")
    probes = [
        ("POST", LOGIN, {"data": b"\x00" * 1000}), ("POST", LOGIN, {"json": {"username": ["a"], "password": {}}}),
        ("POST", LOGIN, {"json": {"username": "a$", "password": "x"}}),
        ("POST", LOGIN, {"json": {"username": "$", "password": "x"}}),
        ("POST", LOGIN, {"files": {"file": b"x"}}),
        ("POST", LOGIN, {"data": {"username": "admin", "password": "admin", "operationsScope": "[1]"}}),
        ("GET", "/api/stable/auth/user/%00", {"headers": {"Authorization": f"Bearer {token}"}}),
        ("GET", "/api/stable/auth/token?userName=", {"headers": {"Authorization": f"Bearer {token}"}}),
        ("DELETE", "/api/stable/auth/logout?sessionId=", {"headers": {"Authorization": f"Bearer {token}x"}}),
        ("GET", "/api/stable/auth/whoami", {"headers": {"Authorization": "Bearer " + "A" * 5000}}),
        ("GET", "/api/stable/auth/whoami", {"headers": {"Authorization": "Basic YWRtaW46YWRtaW4="}}),
    ]
    for method, path, kwargs in probes:
        response = api.request(method, path, **kwargs)
        assert response.status_code < 500, (method, path, response.text)
        body = response.json()
        assert body["status"] is False or response.status_code == 200
        assert "Traceback" not in response.text
    assert "Traceback" not in api.log()


def test_go_hash_in_the_examples_is_the_contract_vector():
    # the example admin (docs/examples) is exactly the Go server's output for "admin"
    from tests.support import EXAMPLES
    text = (EXAMPLES / "backup-repository" / USERS / "admin.yaml").read_text()
    assert GO_ADMIN_HASH in text


def test_a_known_route_with_a_trailing_slash_is_redirected(api):
    """As the Go server does: 301 to the route without the slash for GET and HEAD (the query kept), 308 otherwise;
    an unknown path with a slash stays 404."""
    answer = api.get("/health/?x=1", allow_redirects=False)
    assert answer.status_code == 301 and answer.headers["Location"] == "/health?x=1"
    assert api.request("HEAD", "/api/stable/auth/whoami/", allow_redirects=False).status_code == 301
    login = api.request("POST", "/api/stable/auth/login/", json={"username": "admin", "password": "admin"},
                        allow_redirects=False)
    assert login.status_code == 308 and login.headers["Location"] == "/api/stable/auth/login"
    assert api.get("/health/", allow_redirects=True).status_code == 200
    assert_error(api.get("/no/such/route/", allow_redirects=False), 404, "not found")
