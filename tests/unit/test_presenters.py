"""Every presenter of http/presenters/ against docs/openapi.yaml: the answer it builds from representative domain
objects is valid for its operation's documented schema ($refs resolved, formats checked, nullable understood),
writes its fields in the order the schema lists them, and a field dropped or renamed is refused by that schema —
so a presenter that loses a field fails here, before any server starts."""

import functools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from backup_repository.domain.access import Actor
from backup_repository.domain.collections import Collection, ListedCollection, Usage
from backup_repository.domain.sessions import GrantedAccess
from backup_repository.domain.users import User
from backup_repository.domain.versions import Version
from backup_repository.health.checks import CheckResult
from backup_repository.http.base import CHECKS_FAILED
from backup_repository.http.presenters import auth, collections, health, sessions, versions
from backup_repository.services.auth import LoginResult, Principal

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
URI = "urn:backup-repository:openapi"

# --- representative domain objects: times with and without microseconds, in and out of UTC; nulls and values ----
NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=timezone.utc)
EARLIER = datetime(2026, 11, 27, 9, 30, tzinfo=timezone(timedelta(hours=2)))
SESSION = GrantedAccess("ab" * 32, NOW + timedelta(hours=1), False, "Login", "192.0.2.7", "admin", "", EARLIER, NOW)
KEY_SESSION = GrantedAccess("cd" * 32, NOW, True, "Login", "2001:db8::1", "backup", "ci", EARLIER, NOW, NOW,
                            credential="never shown")
USER = User("admin", email="admin@example.org", roles=("systemAdmin", "backupDownloader"))
PRINCIPAL = Principal(Actor(USER), SESSION)
LOGIN = LoginResult("header.claims.signature", SESSION)
VERSIONS = [
    Version("6f1c3a52-8a7e-4d8b-9a55-0d2f3c4b5a69", "iwa-ait", 1, "iwa-ait-1.tar.gz.gpg", 1, "0" * 64, "ab" * 32,
            "admin", EARLIER, EARLIER),
    Version("0b9e2c1d-4f3a-4e6b-8c7d-9a8b7c6d5e4f", "iwa-ait", 2, "zażółć \"2\".gpg", 5 << 30, "f" * 64, "cd" * 32,
            "backup", NOW, NOW, NOW),
]
LISTING = [
    ListedCollection(Collection("iwa-ait", "Backups of the union", max_backups_count=5, max_collection_size=1 << 40),
                     Usage(2, (5 << 30) + 1, NOW)),
    ListedCollection(Collection("empty"), Usage(0, 0, None)),
]
PASSED = [CheckResult("DbValidator", True, "OK"), CheckResult("StorageAvailabilityValidator", True, "OK")]
FAILED = [CheckResult("DbValidator", True, "OK"),
          CheckResult("StorageAvailabilityValidator", False, "cannot reach the store: timed out")]


def ok(data):  # the envelope of http/base.py: BaseHandler.ok and BaseHandler.fail
    return {"status": True, "data": data}


def failed(message, data):
    return {"status": False, "error": message, "data": data}


#: (operationId, status, the answer built by the presenters): every JSON answer of a successful operation, and the
#: health endpoints' 500 (an answer on purpose).
ANSWERS = {
    "login": ("login", "200", ok(auth.token(LOGIN))),
    "refresh": ("refreshToken", "200", ok(auth.token(LoginResult("other.token.here", KEY_SESSION)))),
    "whoami": ("whoami", "200", ok(auth.whoami(PRINCIPAL))),
    "profile": ("viewUser", "200", ok(auth.profile(USER))),
    "profile without roles": ("viewUser", "200", ok(auth.profile(User("nobody")))),
    "sessions": ("listSessions", "200", ok(sessions.sessions([KEY_SESSION, SESSION]))),
    "no sessions": ("listSessions", "200", ok(sessions.sessions([]))),
    "logout": ("logout", "200", ok(sessions.revoked(SESSION.id))),
    "collections": ("listCollections", "200", ok(collections.collections(LISTING))),
    "versions": ("listVersions", "200", ok(versions.versions(VERSIONS))),
    "upload": ("uploadVersion", "200", ok(versions.uploaded(VERSIONS[1]))),
    "collection health": ("collectionHealth", "200", ok(health.health(PASSED))),
    "collection health failed": ("collectionHealth", "500", failed(CHECKS_FAILED, health.health(FAILED))),
    "ready": ("ready", "200", ok(health.health(PASSED))),
    "ready failed": ("ready", "500", failed(CHECKS_FAILED, health.health(FAILED))),
    "alive": ("health", "200", ok(health.alive())),
}


@functools.cache
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))


def pointer(*parts) -> str:
    return "#/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def operation(operation_id: str) -> tuple:
    """(path, method) of an operation of the spec."""
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return path, method
    raise LookupError(operation_id)


def answer_schema(operation_id: str, status: str) -> str:
    """Where the schema of an operation's JSON answer is, as a reference into the spec."""
    path, method = operation(operation_id)
    response = spec()["paths"][path][method]["responses"][status]
    assert "$ref" not in response, "an inline response is expected for a presenter's answer"
    return URI + pointer("paths", path, method, "responses", status, "content", "application/json", "schema")


@functools.cache
def validator(operation_id: str, status: str) -> OAS30Validator:
    registry = Registry().with_resource(URI, DRAFT4.create_resource(spec()))
    return OAS30Validator({"$ref": answer_schema(operation_id, status)}, registry=registry,
                          format_checker=oas30_format_checker)


def problems(operation_id: str, status: str, answer) -> list:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator(operation_id, status).iter_errors(answer)]


def resolve(schema: dict) -> dict:
    """A schema with its ``$ref`` followed (references of this spec are local: ``#/components/...``)."""
    while "$ref" in schema:
        node = spec()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def objects(schema: dict, instance, where=""):
    """(where, schema, object) for every JSON object of ``instance``, with the schema that describes it."""
    schema = resolve(schema)
    if isinstance(instance, dict):
        yield where, schema, instance
        for key, value in instance.items():
            yield from objects(schema.get("properties", {}).get(key, {}), value, f"{where}/{key}")
    elif isinstance(instance, list):
        for index, item in enumerate(instance):
            yield from objects(schema.get("items", {}), item, f"{where}/{index}")


def mutations(instance, where=""):
    """(what, a copy of ``instance`` with one field dropped or renamed) for every field at every depth; a rename
    changes the case of the first letter, the slip that turns ``CreatedAt`` into ``createdAt``."""
    if isinstance(instance, dict):
        for key, value in instance.items():
            yield f"{where}/{key} dropped", {k: v for k, v in instance.items() if k != key}
            renamed = key[0].swapcase() + key[1:]
            yield f"{where}/{key} renamed {renamed}", {(renamed if k == key else k): v for k, v in instance.items()}
            for what, changed in mutations(value, f"{where}/{key}"):
                yield what, {**instance, key: changed}
    elif isinstance(instance, list):
        for index, item in enumerate(instance):
            for what, changed in mutations(item, f"{where}/{index}"):
                yield what, [*instance[:index], changed, *instance[index + 1:]]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_each_presenter_answers_as_docs_openapi_describes(case):
    operation_id, status, answer = ANSWERS[case]
    assert problems(operation_id, status, answer) == []


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_each_presenter_writes_the_fields_in_the_order_of_the_schema(case):
    """The Go server's clients get the same text as ever: the fields in the order the spec's ``required`` lists."""
    operation_id, status, answer = ANSWERS[case]
    path, method = operation(operation_id)
    schema = spec()["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    for where, described, instance in objects(schema, answer):
        assert list(instance) == described["required"], where or "/"


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_field_dropped_or_renamed_by_a_presenter_is_refused(case):
    operation_id, status, answer = ANSWERS[case]
    changes = list(mutations(answer))
    assert len(changes) >= 4  # the envelope's two fields, at least, each dropped and renamed
    assert [what for what, changed in changes if not problems(operation_id, status, changed)] == []


def test_every_json_answer_of_the_spec_has_a_presenter_case():
    """A new endpoint's success answer is added here with its presenter (downloads send the file, not JSON)."""
    documented = {(op["operationId"], status)
                  for item in spec()["paths"].values() for op in item.values() if isinstance(op, dict)
                  for status, response in op["responses"].items()
                  if status in ("200", "500") and "application/json" in response.get("content", {})}
    assert documented == {(operation_id, status) for operation_id, status, _ in ANSWERS.values()}


def test_times_are_rfc3339_in_utc_and_a_token_expires_to_the_second():
    version = versions.version(VERSIONS[0])
    assert (version["CreatedAt"], version["DeletedAt"]) == ("2026-11-27T07:30:00Z", None)
    assert sessions.granted_access(KEY_SESSION)["DeletedAt"] == "2026-11-27T12:00:00.123456Z"
    assert auth.token(LOGIN)["expire"] == "2026-11-27T13:00:00Z"
    assert collections.collection(LISTING[1])["latestVersionAt"] is None


def test_a_session_never_shows_its_credential():
    assert "never shown" not in str(sessions.granted_access(KEY_SESSION))


def test_the_probe_listener_answers_as_docs_api_describes():
    """The probe listener's /ready is not in docs/openapi.yaml (it is not the API's listener); docs/api.md#health
    gives its answers."""
    assert health.probe_ready() == {"ready": True}
    assert health.probe_not_ready(["StorageAvailabilityValidator"]) == {
        "ready": False, "failed": ["StorageAvailabilityValidator"]}
