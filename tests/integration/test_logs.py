"""--log-format=json and request ids (docs/monitoring.md#logs), against a real server: every line parses, the lines
about one request carry its id, client, user and collection, and the id is echoed on every answer — taken from
X-Request-Id only when a trusted proxy sends it."""

import json

from tests.integration.collections_config import PASSWORD, version_path, write_collections_config
from tests.support import pgp_message, wait_until


def entries(server) -> list:
    return [json.loads(line) for line in server.raw_log().splitlines()]


def test_json_lines_carry_the_request(make_backend, config, start_server):
    write_collections_config(config)
    server = start_server(make_backend("sqlite", "local"), config, "--log-format=json")
    token = server.login("writer", PASSWORD)
    stored = server.request("POST", version_path("docs"), token, data=pgp_message(b"x" * 1000))
    assert stored.status_code == 200
    request_id = stored.headers["X-Request-Id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    refused = server.request("POST", version_path("docs"), token, data=b"plain text")
    assert refused.status_code == 400 and refused.headers["X-Request-Id"] not in ("", request_id)
    missing = server.get("/no/such/path")
    assert missing.status_code == 404 and missing.headers["X-Request-Id"]

    assert wait_until(lambda: any(e.get("status") == 400 for e in entries(server)))
    lines = entries(server)  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    about = [line for line in lines if line.get("request_id") == request_id]
    messages = [line["message"] for line in about]
    assert any(m.startswith("upload of docs v1 started by 'writer'") for m in messages), messages
    assert any(m.startswith("stored docs v1: ") for m in messages), messages
    access = [line for line in about if line["logger"] == "backup_repository.access"]
    assert len(access) == 1
    assert access[0]["status"] == 200 and access[0]["method"] == "POST" and access[0]["endpoint"] == "versions"
    assert access[0]["user"] == "writer" and access[0]["collection"] == "docs" and access[0]["client"] == "127.0.0.1"
    assert access[0]["duration_ms"] > 0 and access[0]["path"] == version_path("docs")
    refusal = [line for line in lines if line.get("request_id") == refused.headers["X-Request-Id"]]
    assert any("refused" in line["message"] or line.get("status") == 400 for line in refusal)
    # a line outside any request has no request fields
    assert any("request_id" not in line and line["message"].startswith("configuration:") for line in lines)


def test_a_request_id_is_taken_from_trusted_proxies_only(make_backend, config, start_server):
    untrusting = start_server(make_backend("sqlite", "local"), config)
    answer = untrusting.get("/health", headers={"X-Request-Id": "from-the-client"})
    assert answer.headers["X-Request-Id"] != "from-the-client"

    behind_proxy = start_server(make_backend("sqlite", "local"), config, "--trusted-proxies=127.0.0.1/32",
                                "--log-format=text")
    answer = behind_proxy.request("POST", "/api/stable/auth/login", json={"username": "admin", "password": "x"},
                                  headers={"X-Request-Id": "edge-7f3a:42"})
    assert answer.status_code == 401 and answer.headers["X-Request-Id"] == "edge-7f3a:42"
    assert wait_until(lambda: "[request edge-7f3a:42]" in behind_proxy.log())
    assert any("login refused" in line and line.endswith("[request edge-7f3a:42]")
               for line in behind_proxy.log().splitlines())
    # what is no request id is not believed, even from the proxy
    for junk in ("two words", "x" * 201, "new\nline"):
        answer = behind_proxy.get("/health", headers={"X-Request-Id": junk.replace("\n", "%0A")})
        assert answer.headers["X-Request-Id"] != junk and len(answer.headers["X-Request-Id"]) == 32


def test_no_client_byte_breaks_a_log_line(make_backend, config, start_server):
    """A raw 0x85 octet in the request line, and U+2028 and U+0085 percent-encoded in a collection id, are written
    escaped in both formats: Python's splitlines() (which breaks at U+0085, U+2028, U+2029 too) finds exactly the
    lines the server wrote, and each JSON line parses (docs/security.md)."""
    import socket
    from urllib.parse import urlsplit

    write_collections_config(config)
    for log_format in ("json", "text"):
        server = start_server(make_backend("sqlite", "local"), config, f"--log-format={log_format}",
                              "--log-level=debug")
        token = server.login("writer", PASSWORD)
        for collection_id in ("a%E2%80%A8b", "c%C2%85d", "e%E2%80%A9f"):
            assert server.get(version_path(collection_id), token).status_code in (403, 404)
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET /api/stable/repository/collection/g\x85h/version HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
            sock.recv(65536)
        assert wait_until(lambda: "g\\x85h" in server.raw_log() or "g\\u0085h" in server.raw_log()), log_format
        raw = server.raw_log()
        assert len(raw.splitlines()) == raw.count("\n"), log_format
        for unsafe in ("\x85", "\u2028", "\u2029"):
            assert unsafe not in raw, (log_format, unsafe)
        if log_format == "json":
            lines = [json.loads(line) for line in raw.splitlines()]
            assert any(line.get("collection") == "a\u2028b" for line in lines)  # the value itself is kept
        else:
            assert "a\\u2028b" in raw or "a%E2%80%A8b" in raw
