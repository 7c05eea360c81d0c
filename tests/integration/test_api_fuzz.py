"""Hypothesis-driven requests against the live server, for every operation of docs/openapi.yaml.

Path parameters, query strings, headers, tokens and bodies are generated (hostile characters, dot segments, huge
and empty values, random and almost-valid bodies). Whatever comes in, the server must answer with its envelope:
no 5xx except the documented ones, never a traceback, always the safety headers. The budget is fixed
(``derandomize``: the same examples every run), so the test takes the same few seconds each time.
"""

import json
from urllib.parse import quote

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.collections_config import PASSWORD, module_server
from tests.support import ROOT, pgp_message

SPEC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
OPERATIONS = [(path, method, op) for path, item in SPEC["paths"].items()
              for method, op in item.items() if method in ("get", "post", "delete", "head")]
EXAMPLES_PER_OPERATION = 80
DOCUMENTED_500 = {"one of checks failed"}

hostile_text = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["..", ".", "%2e%2e", "../../etc/passwd", "docs", "iwa-ait", "latest", "v1", "1", "0", "-1",
                     "v99999999999999999999", "admin", "admin$ci", "$", "a" * 300, "\x00", "é", "docs/../older",
                     "%00", "%ff", "*", "{collectionId}", "ADMIN", " ", ""]),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
VALID = {"collectionId": ["docs", "iwa-ait", "older", "closed"], "version": ["latest", "1", "v1", "2"],
         "name": ["admin", "reader", "nobody"]}
HEADER_EXAMPLES = {
    "Range": ["bytes=0-10", "bytes=-5", "bytes=5-", "bytes=99999999-", "bytes=0-0", "bytes=-0", "bytes=3-1",
              "bytes=0-1,2-3", "bytes=--1", "bytes=18446744073709551616-"],
    "If-Range": ['"abc"', "W/\"x\"", ""],
    "X-Forwarded-For": ["10.0.0.1", "::1, 10.0.0.1", "garbage", "1.2.3.4:80", "[::1]:80", ""],
    "X-Real-IP": ["10.0.0.1", "not-an-ip", "::ffff:10.0.0.1"],
    "Content-Type": ["application/json", "multipart/form-data", "multipart/form-data; boundary=\"\"",
                     "application/x-www-form-urlencoded", "text/plain; charset=\xff"],
    "Cookie": ["jwt=garbage", "jwt=", "a=b"],
    "Content-Encoding": ["gzip", "br"],
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server for the whole module (hypothesis runs many examples against it)."""
    server = module_server(tmp_path_factory.mktemp("fuzz"))
    server.tokens = [server.login("admin", PASSWORD), server.login("reader", PASSWORD),
                     server.login("keyed$up", PASSWORD)]
    server.request("POST", "/api/stable/repository/collection/docs/version", server.tokens[0],
                   data=pgp_message(b"fuzz target"))
    yield server
    server.stop()


def bodies_for(operation):
    content = (operation.get("requestBody") or {}).get("content", {})
    options = [st.none(), st.binary(max_size=200)]
    if "application/json" in content:
        options += [
            st.dictionaries(st.sampled_from(["username", "password", "operationsScope", "x"]),
                            st.one_of(st.text(max_size=30), st.integers(), st.none(), st.lists(st.text(max_size=5)),
                                      st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)),
                            max_size=4).map(lambda d: ("application/json", json.dumps(d).encode())),
            st.just(("application/json", b'{"username": "admin", "password": "admin", "operationsScope": '
                                         b'{"elements": [{"type": "collection", "name": "..", "roles": [1]}]}}')),
        ]
    if "application/octet-stream" in content:
        options += [
            st.binary(max_size=300).map(lambda b: ("application/octet-stream", pgp_message(b))),
            st.binary(max_size=300).map(lambda b: ("application/octet-stream", b"\x85\x01\x0c\x03" + b)),
            st.binary(max_size=300).map(lambda b: ("application/octet-stream", b"-----BEGIN PGP MESSAGE-----" + b)),
        ]
    if "multipart/form-data" in content:
        options += [
            st.tuples(st.text(alphabet="abcdefXYZ0123-", min_size=1, max_size=30), st.binary(max_size=200)).map(
                lambda t: (f"multipart/form-data; boundary={t[0]}",
                           f"--{t[0]}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".encode() + t[1]
                           + f"\r\n--{t[0]}--\r\n".encode())),
            st.binary(max_size=100).map(lambda b: ("multipart/form-data; boundary=", b)),
        ]
    return st.one_of(*options)


def request_strategy(path, method, operation):
    names = [p["name"] for p in SPEC["paths"][path].get("parameters", []) + operation.get("parameters", [])
             if "name" in p and p.get("in") == "path"]
    names += [p["$ref"].rsplit("/", 1)[-1] for p in SPEC["paths"][path].get("parameters", []) if "$ref" in p]
    return st.fixed_dictionaries({
        # mostly names that exist, so that requests get past the lookups into the interesting code
        "path": st.fixed_dictionaries({name: st.one_of(st.sampled_from(VALID[name]), st.sampled_from(VALID[name]),
                                                       hostile_text) for name in set(names)}),
        "quote": st.booleans(),
        "query": st.dictionaries(st.sampled_from(["code", "token", "userName", "sessionId", "x", "version"]),
                                 hostile_text, max_size=3),
        "auth": st.sampled_from(["admin", "admin", "reader", "key", "none", "garbage", "basic"]),
        "headers": st.dictionaries(st.sampled_from(sorted(HEADER_EXAMPLES)),
                                   st.sampled_from(sorted(HEADER_EXAMPLES)).flatmap(
                                       lambda name: st.one_of(st.sampled_from(HEADER_EXAMPLES[name]), header_values)),
                                   max_size=3),
        "body": bodies_for(operation),
    })


def send(server, path, method, generated):
    url_path = path
    for name, value in generated["path"].items():
        value = quote(value, safe="") if generated["quote"] else quote(value, safe="/.$")
        url_path = url_path.replace("{" + name + "}", value or "x")
    headers = {k: v for k, v in generated["headers"].items() if k != "Transfer-Encoding-Hint"}
    auth = generated["auth"]
    if auth in ("admin", "reader", "key"):
        headers["Authorization"] = "Bearer " + server.tokens[("admin", "reader", "key").index(auth)]
    elif auth == "garbage":
        headers["Authorization"] = "Bearer eyJhbGciOiJub25lIn0.e30."
    elif auth == "basic":
        headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
    data = None
    if generated["body"] is not None:
        if isinstance(generated["body"], tuple):
            headers["Content-Type"], data = generated["body"]
        else:
            data = generated["body"]
    return requests.request(method.upper(), server.url + url_path, params=generated["query"], headers=headers,
                            data=data, timeout=30, allow_redirects=False)


def check(response, method):
    where = f"{method.upper()} {response.url} -> {response.status_code}: {response.text[:300]!r}"
    assert "Traceback" not in response.text, where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    assert response.headers.get("Cache-Control") == "no-store", where
    if method == "head" or response.headers.get("Content-Type", "").startswith("application/octet-stream"):
        assert response.status_code < 500, where
        return
    body = response.json()
    assert set(body) >= {"status", "data"}, where
    if response.status_code >= 500:
        assert body.get("error") in DOCUMENTED_500, where
    elif response.status_code >= 400:
        assert body["status"] is False and ("error" in body or body.get("code") == 401), where


@pytest.mark.parametrize("path, method, operation", OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_generated_requests_never_break_the_server(live, path, method, operation):
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request_strategy(path, method, operation))
    def one(generated):
        check(send(live, path, method, generated), method)

    one()
    assert "Traceback" not in live.log()
    assert live.get("/health").status_code == 200


def test_the_openapi_document_is_valid_and_covers_every_route():
    from openapi_spec_validator import validate

    validate(SPEC)
    from backup_repository.app import make_app

    class Ctx:  # routes need the context object, and the settings that add routes (none by default)
        class settings:
            metrics_token = ""  # /metrics (Prometheus text, docs/monitoring.md) is outside the JSON API's document

    documented = {path for path in SPEC["paths"]}
    app = make_app(Ctx())
    routes = [rule.matcher.regex.pattern for rule in app.default_router.rules[0].target.rules]
    for path in documented:
        concrete = path.replace("{collectionId}", "docs").replace("{version}", "latest").replace("{name}", "x")
        assert any(__import__("re").fullmatch(pattern.rstrip("$"), concrete) for pattern in routes), path
    assert len(routes) == len(documented), (sorted(routes), sorted(documented))
