"""Who may do what on collections (docs/api.md#who-may): ACL roles, access keys and scoped tokens against every
collection endpoint, on every database × storage backend."""

import json

import pytest

from tests.integration.collections_config import PASSWORD, write_collections_config, version_path as path
from tests.support import pgp_message

UPLOAD_DENIED = "not authorized to upload versions to this collection"
DOWNLOAD_DENIED = "not authorized to download versions from this collection"
LIST_DENIED = "not authorized to list versions"



@pytest.fixture
def config(config):
    """The users and collections of collections_config.py (conftest's ``api`` starts the server on them)."""
    write_collections_config(config)
    return config


@pytest.fixture
def api(api):
    """conftest's server, with one version in ``docs``."""
    admin = api.login("admin", PASSWORD)
    assert api.request("POST", path("docs"), admin, data=pgp_message(b"first")).status_code == 200
    return api


def can(server, token, collection="docs") -> dict:
    """What the token may do on a collection: upload, download, list (True/False), checked over HTTP."""
    up = server.request("POST", path(collection), token, data=pgp_message(b"probe"))
    down = server.get(path(collection, "/latest"), token)
    listing = server.get(path(collection), token)
    for response, message in ((up, UPLOAD_DENIED), (down, DOWNLOAD_DENIED), (listing, LIST_DENIED)):
        if response.status_code == 403:
            assert response.json() == {"status": False, "error": message, "data": {}}
        elif response is down and response.status_code == 404:  # allowed, but the collection is empty
            assert response.json()["error"] == "cannot find specified version"
        else:
            assert response.status_code == 200, response.text
    return {"upload": up.status_code == 200, "download": down.status_code != 403,
            "list": listing.status_code == 200}


def listed_collections(server, token) -> list:
    response = server.get("/api/stable/repository/collection", token)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["data"]["collections"]]


def scope(*elements) -> str:
    return json.dumps({"elements": [{"type": "collection", "name": n, "roles": r} for n, r in elements]})


def test_acl_roles_decide(api):
    assert can(api, api.login("writer", PASSWORD)) == {"upload": True, "download": False, "list": True}
    assert can(api, api.login("reader", PASSWORD)) == {"upload": False, "download": True, "list": True}
    assert can(api, api.login("nobody", PASSWORD)) == {"upload": False, "download": False, "list": False}
    assert listed_collections(api, api.login("reader", PASSWORD)) == ["docs"]
    assert listed_collections(api, api.login("nobody", PASSWORD)) == []
    assert listed_collections(api, api.login("admin", PASSWORD)) == ["closed", "docs", "iwa-ait", "older", "open"]


def test_access_keys_narrow_to_their_objects(api):
    """keyed is a collectionManager; its keys may only do what their objects grant, on those collections only."""
    assert can(api, api.login("keyed", PASSWORD)) == {"upload": True, "download": True, "list": True}
    up = api.login("keyed$up", PASSWORD)
    assert can(api, up) == {"upload": True, "download": False, "list": True}
    assert can(api, up, "older") == {"upload": False, "download": False, "list": False}
    down = api.login("keyed$down", PASSWORD)
    assert can(api, down) == {"upload": False, "download": True, "list": True}
    assert listed_collections(api, up) == ["docs"]


def test_scoped_tokens_narrow_and_never_widen(api):
    admin_upload_only = api.login("admin", PASSWORD, operationsScope=scope(("docs", ["backupUploader"])))
    assert can(api, admin_upload_only) == {"upload": True, "download": False, "list": True}
    assert can(api, admin_upload_only, "older") == {"upload": False, "download": False, "list": False}
    assert listed_collections(api, admin_upload_only) == ["docs"]
    # a scope naming roles the user does not have gives nothing more
    reader_wants_more = api.login("reader", PASSWORD, operationsScope=scope(("docs", ["collectionManager"])))
    assert can(api, reader_wants_more) == {"upload": False, "download": True, "list": True}
    # an access key and a scope together: both must allow
    key_and_scope = api.login("keyed$up", PASSWORD, operationsScope=scope(("docs", ["backupDownloader"])))
    assert can(api, key_and_scope) == {"upload": False, "download": False, "list": False}


def test_collection_endpoints_need_a_valid_token(api):
    for method, suffix in (("POST", ""), ("GET", ""), ("GET", "/1"), ("HEAD", "/1")):
        body = pgp_message(b"x") if method == "POST" else None  # elsewhere a body is refused first (test_body_cost)
        response = api.request(method, path("docs", suffix), "not-a-token", data=body)
        assert response.status_code == 401
        if method != "HEAD":
            assert response.json()["status"] is False and response.json()["code"] == 401
    assert api.get("/api/stable/repository/collection").status_code == 401


def test_unknown_collection_and_version_are_404(api):
    admin = api.login("admin", PASSWORD)
    missing_collection = {"status": False, "error": "cannot find specified collection", "data": {}}
    missing_version = {"status": False, "error": "cannot find specified version", "data": {}}
    assert api.request("POST", path("nope"), admin, data=pgp_message(b"x")).json() == missing_collection
    assert api.get(path("nope"), admin).json() == missing_collection
    assert api.get(path("nope", "/1"), admin).json() == missing_collection
    for reference in ("2", "v2", "0", "v", "abc", "1.5", "-1", "99999999999999999999999"):
        response = api.get(path("docs", f"/{reference}"), admin)
        assert response.status_code == 404 and response.json() == missing_version, reference
    assert api.get(path("docs", "/1"), admin).status_code == 200
    # the alpha prefix of the original serves the same endpoints
    alpha = api.get("/api/alpha/repository/collection/docs/version/v1", admin)
    assert alpha.status_code == 200 and alpha.content == pgp_message(b"first")
