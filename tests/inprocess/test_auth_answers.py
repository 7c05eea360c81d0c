"""The authentication API's answers (docs/api.md#authentication), in process: login, whoami, refresh, profiles,
sessions and logout, with the statuses and messages of each refusal."""

import pytest

from backup_repository.security.tokens import hash_token
from tests.integration.collections_config import PASSWORD
from tests.support import CHALLENGE, assert_error

LOGIN = "/api/stable/auth/login"
WHOAMI = "/api/stable/auth/whoami"
SESSIONS = "/api/stable/auth/token"
LOGOUT = "/api/stable/auth/logout"


def test_login_answers_a_token_and_its_session(api):
    response = api.request("POST", LOGIN, json={"username": "admin", "password": "admin"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True and set(body["data"]) == {"token", "sessionId", "expire", "msg"}
    assert body["data"]["msg"] == "Use this sessionId to revoke this token anytime"
    assert body["data"]["sessionId"] == hash_token(body["data"]["token"])
    assert "WWW-Authenticate" not in response.headers
    # a form body logs in too
    form = api.request("POST", LOGIN, data="username=admin&password=admin",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200 and form.json()["data"]["token"]


@pytest.mark.parametrize("body", [
    {"username": "admin", "password": "wrong"}, {"username": "ghost", "password": "admin"},
    {"username": "admin$nokey", "password": "admin"},
])
def test_a_wrong_login_is_401_with_a_challenge(api, body):
    response = api.request("POST", LOGIN, json=body)
    assert_error(response, 401, "incorrect Username or Password")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize("data", ['{"username": "admin"}', '{"username": 5, "password": "admin"}', "[1]",
                                  "{not json", ""])
def test_a_login_without_credentials_is_401(api, data):
    response = api.request("POST", LOGIN, data=data, headers={"Content-Type": "application/json"})
    assert_error(response, 401, "missing Username or Password")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize("scope, message", [
    ("nope", "invalid operationsScope: Expecting value: line 1 column 1 (char 0)"),
    ({"elements": []},
     "operationsScope.elements must not be empty; leave operationsScope out for an unscoped token"),
])
def test_a_login_with_a_bad_scope_is_400(api, scope, message):
    response = api.request("POST", LOGIN, json={"username": "admin", "password": "admin", "operationsScope": scope})
    assert_error(response, 400, message)
    assert "WWW-Authenticate" not in response.headers


def test_whoami(api):
    token = api.login("admin", "admin")
    data = api.get(WHOAMI, token).json()["data"]
    assert data["email"] == "admin@example.org" and data["permissions"] == ["systemAdmin"]
    assert data["sessionId"] == hash_token(token)
    session = data["grantedAccess"]
    assert set(session) == {"id", "expiresAt", "deactivated", "description", "requesterIP", "user",
                            "accessKeyName", "CreatedAt", "UpdatedAt", "DeletedAt"}
    assert (session["user"], session["requesterIP"], session["description"]) == ("admin", "127.0.0.1", "Login")
    # the token may come as ?token= or as the cookie jwt too
    assert api.get(f"{WHOAMI}?token={token}").status_code == 200
    assert api.get(WHOAMI, headers={"Cookie": f"jwt={token}"}).status_code == 200


@pytest.mark.parametrize("headers, message", [
    ({}, "auth header is empty"),
    ({"Authorization": "Bearer garbage"}, "token is invalid"),
    ({"Authorization": "Bearer a.b.c"}, "token is invalid"),
])
def test_whoami_without_a_valid_token_is_401_with_a_challenge(api, headers, message):
    response = api.get(WHOAMI, headers=headers)
    assert_error(response, 401, message)
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_refresh_gives_a_new_token_for_the_same_user(api):
    token = api.login("writer", PASSWORD)
    refreshed = api.get("/api/stable/auth/refresh_token", token)
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()["data"]["token"]
    assert new != token
    assert api.get(WHOAMI, new).json()["data"]["grantedAccess"]["user"] == "writer"
    assert api.get(WHOAMI, token).status_code == 200  # the old one stays valid


def test_user_profiles(api):
    admin, nobody = api.login("admin", "admin"), api.login("nobody", PASSWORD)
    own = api.get("/api/stable/auth/user/nobody", nobody)
    assert own.status_code == 200 and own.json()["data"] == {"email": "nobody@example.org", "permissions": []}
    assert api.get("/api/stable/auth/user/nobody", admin).json() == own.json()
    assert_error(api.get("/api/stable/auth/user/admin", nobody), 403, "no permissions to view that user account")
    assert_error(api.get("/api/stable/auth/user/ghost", nobody), 403, "no permissions to view that user account")
    assert_error(api.get("/api/stable/auth/user/ghost", admin), 404, "cannot find specified user")


def test_sessions(api):
    first, second = api.login("writer", PASSWORD), api.login("writer", PASSWORD)
    listed = api.get(SESSIONS, second)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["data"]["grantedAccesses"]] == [hash_token(second), hash_token(first)]
    assert_error(api.get(f"{SESSIONS}?userName=admin", second), 403, "no permissions to act as other user")
    admin = api.login("admin", "admin")
    assert len(api.get(f"{SESSIONS}?userName=writer", admin).json()["data"]["grantedAccesses"]) == 2


def test_logout(api):
    writer, reader, admin = api.login("writer", PASSWORD), api.login("reader", PASSWORD), api.login("admin", "admin")
    assert_error(api.request("DELETE", f"{LOGOUT}?sessionId={hash_token(reader)}", writer), 403,
                 "you don't have permissions to revoke session of other user")
    assert_error(api.request("DELETE", f"{LOGOUT}?sessionId=unknown", admin), 404, "cannot find specified session")
    by_admin = api.request("DELETE", f"{LOGOUT}?sessionId={hash_token(reader)}", admin)
    assert by_admin.json() == {"status": True, "data": {"message": "JWT was revoked",
                                                        "sessionId": hash_token(reader)}}
    own = api.request("DELETE", LOGOUT, writer)
    assert own.status_code == 200 and own.json()["data"]["sessionId"] == hash_token(writer)
    for token in (writer, reader):
        assert_error(api.get(WHOAMI, token), 401, "token was revoked or has expired")
    assert api.get(WHOAMI, admin).status_code == 200
