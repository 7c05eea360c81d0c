"""schemathesis against a live server, driven by docs/openapi.yaml, with every check it has.

The run goes through schemathesis's own engine (what ``schemathesis run`` does): the examples, coverage, fuzzing
and stateful phases over every operation of the spec, with all built-in checks enabled (server errors, status
codes, content types, response schemas and headers, positive and negative data, missing required headers, ignored
authentication, unsupported methods and their ``Allow`` header, use after free, resource availability,
object-level authorization, and the response time with a limit). It runs twice: without credentials, and
authenticated: an admin token from ``POST /api/stable/auth/login`` as ``Authorization: Bearer`` (fetched again
when a request gets 401, because the run itself revokes sessions with ``DELETE /api/stable/auth/logout``) and the
health-check key for ``/ready``.

The budget is fixed: a seed, deterministic generation, no example database and a few examples per operation, so
that every run sends the same requests and takes the same few seconds. Every failure is collected and the test
fails listing all of them, each with the curl command that reproduces it.
"""

import base64
import subprocess
import time

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.media_types import MEDIA_TYPE_STRATEGIES
from schemathesis.engine import Status, events, from_schema

from tests.integration.collections_config import PASSWORD, module_server
from tests.support import HEALTH_KEY, ROOT, pgp_message

SPEC_PATH = ROOT / "docs" / "openapi.yaml"
SEED = 20260101
EXAMPLES_PER_OPERATION = 20
#: ``max_response_time`` is the one check that is off unless it has a limit. A login checks a password hash on
#: purpose (also for unknown users), so the limit is generous: it catches hangs, not slowness.
MAX_RESPONSE_TIME = 10.0


def crc24(data: bytes) -> int:
    """The checksum of ASCII armor (RFC 9580 §6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(message: bytes) -> bytes:
    text = base64.b64encode(message).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    checksum = base64.b64encode(crc24(message).to_bytes(3, "big")).decode()
    return ("-----BEGIN PGP MESSAGE-----\n\n" + "\n".join(lines) + f"\n={checksum}\n-----END PGP MESSAGE-----\n"
            ).encode()


#: What the spec declares for an upload body (``format: binary``, "an encrypted OpenPGP message, ASCII-armored or
#: binary"): JSON Schema cannot say "OpenPGP", so schemathesis gets a strategy for the media type, as its docs
#: describe for binary formats. Without it, the positive-data check would demand that any bytes be accepted.
OPENPGP_MESSAGES = st.binary(min_size=1, max_size=300).map(pgp_message).flatmap(
    lambda message: st.sampled_from([message, armor(message)]))


@pytest.fixture(scope="module")
def openpgp_bodies():
    previous = MEDIA_TYPE_STRATEGIES.get("application/octet-stream")
    schemathesis.openapi.media_type("application/octet-stream", OPENPGP_MESSAGES)
    yield
    if previous is None:
        MEDIA_TYPE_STRATEGIES.pop("application/octet-stream", None)
    else:
        MEDIA_TYPE_STRATEGIES["application/octet-stream"] = previous


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server for the module (the example configuration plus the collections of the collection tests), with
    a version in `iwa-ait` and `docs`, so that downloads have something to send."""
    server = module_server(tmp_path_factory.mktemp("schemathesis"))
    try:
        token = server.login("admin", PASSWORD)
        for collection_id in ("iwa-ait", "docs"):
            response = server.request("POST", f"/api/stable/repository/collection/{collection_id}/version", token,
                                      data=armor(pgp_message(b"schemathesis target")))
            assert response.status_code == 200, response.text
        yield server
    finally:
        server.stop()


def schemathesis_config(base_url: str, authenticated: bool) -> schemathesis.Config:
    data = {
        "seed": SEED,
        "base-url": base_url,
        "workers": 1,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "database": "none",
                       "mode": "all",
                       # No made-up values for the credentials of the security schemes (`?token=`, the `jwt`
                       # cookie, ...): schemathesis fills such parameters from earlier responses too, e.g. with
                       # the token of a successful login, and then `ignored_auth` takes that real token for a
                       # generated one ("API accepts invalid authentication"). `ignored_auth` still checks every
                       # operation without credentials and, authenticated, with invalid ones in every location
                       # the spec declares (header, query, cookie).
                       "with-security-parameters": False},
        # every check (all are on by default but ``max_response_time``, which needs a limit)
        "checks": {"enabled": True, "max_response_time": MAX_RESPONSE_TIME},
        "request-timeout": 30,
        # keep testing an operation after its first failure, so that one run reports every failure
        "continue-on-failure": True,
        # the reproductions carry the real bodies and credentials (of this throwaway server), so that they can be
        # replayed as they are
        "output": {"sanitization": {"enabled": False}},
        "operations": [{
            "include-operation-id": ["downloadVersion", "downloadVersionHeaders"],
            # 416 is the documented answer to a range that starts beyond the end of the file: the `Range` header
            # is schema-valid (a schema cannot know the file's size), the request is still unsatisfiable
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "416", "429", "5xx"]}},
        }, {
            "include-operation-id": "collectionHealth",
            # 500 `one of checks failed` is the documented answer of a collection whose checks fail (e.g. a
            # window without a backup), not a server error; its body is still checked against the `Unhealthy`
            # schema (`error: one of checks failed`), so an "internal server error" 500 still fails the run
            "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "500"]}},
        }],
    }
    if authenticated:
        data["auth"] = {
            "dynamic": {"openapi": {"bearer": {
                "path": "/api/stable/auth/login", "method": "post",
                "payload": {"username": "admin", "password": PASSWORD},
                "extract_from": "body", "extract_selector": "/data/token", "retry_on": [401],
            }}},
            "openapi": {"healthKey": {"api_key": HEALTH_KEY}},
        }
    return schemathesis.Config.from_dict(data)


def run_schemathesis(base_url: str, authenticated: bool):
    """Every phase of the engine; returns (failures as readable text, errors, a one-line summary)."""
    schema = schemathesis.openapi.from_path(SPEC_PATH, config=schemathesis_config(base_url, authenticated))
    failures, errors, seen, summary = [], [], {}, ""
    for event in from_schema(schema).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.status != Status.FAILURE or node.failure_info is None:
                        continue
                    failure = node.failure_info.failure
                    operation = failure.operation or event.recorder.label
                    key = (operation, node.name, failure.title)
                    if key in seen:  # the same failure of the same operation: counted, reported once
                        seen[key][0] += 1
                        continue
                    steps = node.failure_info.steps
                    reproduction = "\n".join(step.curl for step in steps) if steps else node.failure_info.code_sample
                    seen[key] = [1, f"{operation} [{node.name}] {failure.title}\n{failure.message.strip()}\n"
                                    f"reproduce:\n{reproduction}"]
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            failures += [f"{failure.operation} [after the run] {failure}" for failure in event.failures]
            summary = f"{event.running_time:.1f}s, {event.stop_reason}"
            if event.payload is not None:
                summary += f", {event.payload.reauth_count} re-login(s) after a 401"
                if event.payload.reauth_broke:
                    errors.append("logging in again after a 401 failed (see the server log)")
    failures[:0] = [text if count == 1 else f"{text}\n({count} similar failures of this operation)"
                    for count, text in seen.values()]
    return failures, errors, summary


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "admin-token"])
def test_schemathesis_finds_no_failure(live, openpgp_bodies, authenticated):
    started = time.monotonic()
    failures, errors, summary = run_schemathesis(live.url, authenticated)
    print(f"schemathesis ({'authenticated' if authenticated else 'anonymous'}): {summary}, "
          f"{time.monotonic() - started:.1f}s, {len(failures)} failure(s), {len(errors)} error(s)")
    report = [f"{len(failures)} failure(s):", *failures]
    if errors:
        report += [f"{len(errors)} error(s):", *errors]
    assert not failures and not errors, "\n\n".join(report)
    assert "Traceback" not in live.log()


def test_the_server_stops_cleanly_after_the_runs(live):
    """What the runs left behind: after SIGTERM the server must exit by itself (a graceful stop, exit status 0)
    within its grace period, and no upload may leave a temporary object in the storage (docs/api.md: a rejected
    upload leaves no version, no object and no lock). Runs after the schemathesis tests (file order)."""
    started = time.monotonic()
    live.proc.terminate()
    try:
        status = live.proc.wait(10)
    except subprocess.TimeoutExpired:
        status = None
    took = time.monotonic() - started
    live.stop()  # kills it if it is still there
    leftovers = sorted(str(path.relative_to(live.storage)) for path in live.storage.rglob(".*") if path.is_file())
    problems = []
    if status != 0:
        problems.append(f"the server did not stop by itself within 10s of SIGTERM (exit status {status}, "
                        f"{took:.1f}s); the end of its log:\n" + "\n".join(live.log().splitlines()[-5:]))
    if leftovers:
        problems.append(f"temporary upload objects left in the storage: {leftovers}")
    assert not problems, "\n".join(problems)
