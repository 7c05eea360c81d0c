"""Parsing of BackupUser, BackupCollection and Secret documents (docs/configuration.md#configuration-documents).

Every problem is reported as a ``Problem`` naming the file and the field, and breaks only the object that the
document describes: a user whose password secret is missing is loaded but cannot log in, a collection with an
unparsable size is left out, and all other objects keep working.

A warning (also a ``Problem``, kept apart) is a valid setting whose effect a user coming from the Go server may not
expect: ``restrictByIP`` and ``deactivated`` are enforced here, and a health code entry that no code can match
refuses every health request. Warnings break nothing; ``--validate-config`` prints them
(docs/migrating.md#what---validate-config-warns-about).
"""

import os
import re
import sys
from dataclasses import dataclass, field

import yaml
from croniter import croniter

from backup_repository.domain import roles as R
from backup_repository.domain.collections import STRATEGIES, VERSION_PLACEHOLDER, BackupWindow, Collection
from backup_repository.domain.names import KEY_NAME_RULE, OBJECT_NAME_RULE, is_key_name, is_object_name
from backup_repository.domain.units import parse_duration, parse_size
from backup_repository.domain.networks import parse_networks
from backup_repository.domain.users import AccessKey, ObjectGrant, User

USERS_DIR = os.path.join("backups.riotkit.org", "v1alpha1", "backupusers")
COLLECTIONS_DIR = os.path.join("backups.riotkit.org", "v1alpha1", "backupcollections")
SECRETS_DIR = os.path.join("v1", "secrets")
EXTENSIONS = (".yaml", ".yml")
#: libyaml's C parser when PyYAML was built with it (about 7 times faster), else the pure-Python one; both safe.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Problem:
    path: str
    field: str
    message: str

    def __str__(self):
        where = f"{self.path}: {self.field}" if self.field else self.path
        return f"{where}: {self.message}"


class DocumentError(Exception):
    """A problem that makes the whole object unusable."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class Document:
    """One YAML file: its id (the file name), path and parsed body."""

    id: str
    path: str
    body: dict
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def warn(self, field_name: str, message: str):
        """Record a problem: something in the document is wrong and is ignored or breaks the object."""
        self.problems.append(Problem(self.path, field_name, message))

    def caution(self, field_name: str, message: str):
        """Record a warning: the setting is valid and applied, but may not do what its author expects."""
        self.warnings.append(Problem(self.path, field_name, message))


@dataclass(frozen=True)
class Secret:
    name: str
    entries: dict


def list_documents(directory: str):
    """File names (sorted) of the documents in ``directory``; empty when it does not exist."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(EXTENSIONS) and not n.startswith("."))


def load_document(path: str, expected_kind: str, problems: list):
    """Read one file; return a Document, or None (with a problem recorded) when it is unusable. The file name is
    the object's id."""
    doc_id = os.path.basename(path).rsplit(".", 1)[0]
    try:
        with open(path, "r", encoding="utf-8") as handle:
            body = yaml.load(handle, Loader=SAFE_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(path, "", f"cannot read the file: {exc}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(path, "", f"not valid YAML: {' '.join(str(exc).split())}"))
        return None
    document = make_document(doc_id, path, body, expected_kind, problems)
    if document is not None:
        metadata = body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if name is not None and str(name) != doc_id:
            document.warn("metadata.name", f"{name!r} differs from the file name; the file name {doc_id!r} is the id")
    return document


def make_document(doc_id: str, location: str, body, expected_kind: str, problems: list):
    """A Document from a parsed body of any source (a file, an API server object), or None with a problem
    recorded. ``location`` names it in problems: a file path, or ``namespace/kind/name``."""
    if not isinstance(body, dict):
        problems.append(Problem(location, "", "the document must be a YAML mapping"))
        return None
    kind = body.get("kind")
    if kind != expected_kind:
        problems.append(Problem(location, "kind", f"expected {expected_kind!r}, found {kind!r}"))
        return None
    if not is_object_name(doc_id):
        hint = "; rename the file" if location.endswith(EXTENSIONS) else ""
        problems.append(Problem(location, "metadata.name",
                                f"{doc_id!r} is not a valid name ({OBJECT_NAME_RULE}){hint}"))
        return None
    return Document(doc_id, location, body)


def _mapping(value, field_name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DocumentError(field_name, "must be a mapping")
    return value


def _list(value, field_name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DocumentError(field_name, "must be a list")
    return value


def _string(value, field_name: str, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise DocumentError(field_name, "must be a string")
    return str(value)


def _bool(value, field_name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise DocumentError(field_name, f"must be true or false, found {value!r}")


def _int(value, field_name: str, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DocumentError(field_name, f"must be a whole number, found {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise DocumentError(field_name, f"must be a whole number, found {value!r}") from None
    if number < 0:
        raise DocumentError(field_name, f"must not be negative, found {number}")
    return number


def _roles(value, field_name: str, document: Document) -> tuple:
    result = []
    for index, role in enumerate(_list(value, field_name)):
        role = str(role)
        if not R.is_known_role(role):
            document.warn(f"{field_name}[{index}]", f"unknown role {role!r}; it grants nothing")
        # kept as the document spells it (answers echo it, as the Go server does); every decision normalizes
        # (domain/roles.py); one copy of each role name for all documents
        result.append(sys.intern(role))
    return tuple(result)


def _networks(value, field_name: str) -> tuple:
    try:
        return parse_networks(_list(value, field_name))
    except ValueError as exc:
        raise DocumentError(field_name, str(exc)) from None


def parse_secret(document: Document) -> Secret:
    entries = {}
    for section in ("data", "stringData"):
        for key, value in _mapping(document.body.get(section), section).items():
            entries[str(key)] = "" if value is None else str(value)
    return Secret(document.id, entries)


def _secret_ref(ref, field_name: str, secrets: dict, document: Document):
    """Resolve ``{name, entry}`` to the entry's value; warn and return None when it cannot be resolved."""
    ref = _mapping(ref, field_name)
    name, entry = _string(ref.get("name"), f"{field_name}.name"), _string(ref.get("entry"), f"{field_name}.entry")
    if not name or not entry:
        document.warn(field_name, "needs both name and entry")
        return None
    secret = secrets.get(name)
    if secret is None:
        document.warn(f"{field_name}.name", f"secret {name!r} does not exist")
        return None
    if entry not in secret.entries:
        document.warn(f"{field_name}.entry", f"secret {name!r} has no entry {entry!r}")
        return None
    return secret.entries[entry]


def _password(spec: dict, prefix: str, secrets: dict, document: Document):
    """``passwordFromRef`` wins over an inline ``password`` when set (docs/configuration.md#configuration-documents)."""
    if spec.get("passwordFromRef"):
        return _secret_ref(spec.get("passwordFromRef"), f"{prefix}passwordFromRef", secrets, document)
    inline = _string(spec.get("password"), f"{prefix}password")
    if not inline:
        document.warn(f"{prefix}password", "no password or passwordFromRef: this login is disabled")
        return None
    return inline


def _grants(value, field_name: str, document: Document, default_type: str) -> tuple:
    grants = []
    for index, item in enumerate(_list(value, field_name)):
        where = f"{field_name}[{index}]"
        item = _mapping(item, where)
        name = item.get("name", item.get("userName"))
        if not name:
            document.warn(where, "needs a name (or userName); entry ignored")
            continue
        kind = sys.intern(_string(item.get("type"), f"{where}.type", default_type))
        grants.append(ObjectGrant(str(name), kind, _roles(item.get("roles"), f"{where}.roles", document)))
    return tuple(grants)


def _key_objects(item: dict, where: str, document: Document) -> tuple:
    """``objects: [{name, type, roles}]``, or the form of the Go server's docs: ``collections: [...]`` with ``roles``
    granted on each of them."""
    if item.get("objects") is not None or item.get("collections") is None:
        return _grants(item.get("objects"), f"{where}.objects", document, "collection")
    roles = _roles(item.get("roles"), f"{where}.roles", document)
    return tuple(ObjectGrant(str(name), "collection", roles)
                 for name in _list(item.get("collections"), f"{where}.collections"))


#: what the health endpoint compares an entry with: sha256 hex of the code (services/collections.py)
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _caution_user(document: Document, spec: dict, deactivated: bool, networks: tuple):
    """Warnings for the user fields the Go server ignored and this server enforces (CONTRACT.md section 2)."""
    if deactivated:
        document.caution("spec.deactivated", (
            f"user {document.id!r} is deactivated: its logins (password and access keys) are refused with 401 "
            "'incorrect Username or Password' and its tokens get 401; the Go server ignored deactivated and let it "
            "in. Remove deactivated (or set it to false) if this user must keep working"))
    if networks:
        allowed = ", ".join(str(value).strip() for value in spec.get("restrictByIP") or ())
        document.caution("spec.restrictByIP", (
            f"user {document.id!r} may log in and use its tokens only from {allowed}; from any other address the "
            "login is refused with 401 'incorrect Username or Password' and its tokens get 401. The Go server "
            "ignored restrictByIP and let it in from anywhere. List every address or network the user connects "
            "from, as this server sees it (behind a reverse proxy, name the proxy in --trusted-proxies), or remove "
            "restrictByIP"))


def parse_user(document: Document, secrets: dict) -> User:
    spec = _mapping(document.body.get("spec"), "spec")
    keys = {}
    for index, item in enumerate(_list(spec.get("accessKeys"), "spec.accessKeys")):
        where = f"spec.accessKeys[{index}]"
        item = _mapping(item, where)
        name = _string(item.get("name"), f"{where}.name")
        if not name:
            document.warn(f"{where}.name", "an access key needs a name; key ignored")
            continue
        if not is_key_name(name):
            document.warn(f"{where}.name", f"{name!r} is not a valid access key name ({KEY_NAME_RULE}); key ignored")
            continue
        keys[name] = AccessKey(
            name=name,
            password_hash=_password(item, f"{where}.", secrets, document),
            objects=_key_objects(item, where, document),
            restrict_by_ip=_networks(item.get("restrictByIP"), f"{where}.restrictByIP"),
        )
    user = User(
        name=document.id,
        email=_string(spec.get("email"), "spec.email"),
        deactivated=_bool(spec.get("deactivated"), "spec.deactivated"),
        organization=_string(spec.get("organization"), "spec.organization"),
        about=_string(spec.get("about"), "spec.about"),
        password_hash=_password(spec, "spec.", secrets, document),
        roles=_roles(spec.get("roles"), "spec.roles", document),
        restrict_by_ip=_networks(spec.get("restrictByIP"), "spec.restrictByIP"),
        access_keys=keys,
    )
    _caution_user(document, spec, user.deactivated, user.restrict_by_ip)
    return user


def _size(value, field_name: str) -> int:
    if value is None:
        return 0
    try:
        return parse_size(value)
    except ValueError as exc:
        raise DocumentError(field_name, str(exc)) from None


def _duration(value, field_name: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise DocumentError(field_name, str(exc)) from None


def parse_collection(document: Document, secrets: dict) -> Collection:
    spec = _mapping(document.body.get("spec"), "spec")
    template = _string(spec.get("filenameTemplate"), "spec.filenameTemplate", "")
    if not template:
        raise DocumentError("spec.filenameTemplate", "is required, for example 'backup-${version}.tar.gz.gpg'")
    if VERSION_PLACEHOLDER not in template:
        raise DocumentError("spec.filenameTemplate", "must contain ${version}")
    if "/" in template or "\\" in template or template.startswith("."):
        raise DocumentError("spec.filenameTemplate", "must be a plain file name (no path separator, no leading dot)")

    windows = []
    for index, item in enumerate(_list(spec.get("windows"), "spec.windows")):
        where = f"spec.windows[{index}]"
        item = _mapping(item, where)
        cron = _string(item.get("from"), f"{where}.from")
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise DocumentError(f"{where}.from", f"{cron!r} is not a 5-field cron expression")
        duration_text = _string(item.get("duration"), f"{where}.duration")
        duration = _duration(duration_text, f"{where}.duration")
        if duration <= 0:
            raise DocumentError(f"{where}.duration", "must be longer than zero")
        windows.append(BackupWindow(sys.intern(cron), duration, sys.intern(duration_text)))

    strategy = sys.intern(_string(spec.get("strategyName"), "spec.strategyName", "fifo"))
    if strategy not in STRATEGIES:
        raise DocumentError("spec.strategyName", f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    strategy_spec = _mapping(spec.get("strategySpec"), "spec.strategySpec")
    keep_older = strategy_spec.get("keepLastOlderNotMoreThan")
    keep_older = None if keep_older is None else _duration(keep_older, "spec.strategySpec.keepLastOlderNotMoreThan")

    floor = spec.get("minimumRetention")
    if floor is not None:
        floor = _duration(floor, "spec.minimumRetention")
        if floor <= 0:
            raise DocumentError("spec.minimumRetention", "must be longer than zero (leave it out for no floor)")

    collection = Collection(
        id=document.id,
        description=_string(spec.get("description"), "spec.description"),
        filename_template=template,
        max_backups_count=_int(spec.get("maxBackupsCount"), "spec.maxBackupsCount"),
        max_one_version_size=_size(spec.get("maxOneVersionSize"), "spec.maxOneVersionSize"),
        max_collection_size=_size(spec.get("maxCollectionSize"), "spec.maxCollectionSize"),
        windows=tuple(windows),
        strategy_name=strategy,
        keep_last_older_not_more_than=keep_older,
        max_older_copies=_int(strategy_spec.get("maxOlderCopies"), "spec.strategySpec.maxOlderCopies"),
        health_code_sha256=_health_code(spec, secrets, document),
        minimum_retention=floor,
        access_control=_grants(spec.get("accessControl"), "spec.accessControl", document, "user"),
    )
    if collection.max_backups_count < 1:
        raise DocumentError("spec.maxBackupsCount", "must be at least 1")
    if collection.max_one_version_size < 1:
        raise DocumentError("spec.maxOneVersionSize", "is required and must be larger than zero")
    if collection.max_collection_size < collection.max_backups_count * collection.max_one_version_size:
        raise DocumentError(
            "spec.maxCollectionSize",
            f"{collection.max_collection_size} bytes is smaller than maxBackupsCount × maxOneVersionSize "
            f"({collection.max_backups_count} × {collection.max_one_version_size} bytes)",
        )
    return collection


def _health_code(spec: dict, secrets: dict, document: Document):
    if not spec.get("healthSecretRef"):
        return None
    value = _secret_ref(spec.get("healthSecretRef"), "spec.healthSecretRef", secrets, document)
    if value is None:
        # A missing secret must not open the health endpoint to everyone: no code can match this.
        return "!unresolved"
    digest = value.strip().lower()
    if not SHA256_HEX.fullmatch(digest):
        ref = spec["healthSecretRef"]
        what = "is empty" if not digest else "is not a sha256 hex digest (64 characters 0-9, a-f)"
        document.caution("spec.healthSecretRef", (
            f"entry {str(ref.get('entry'))!r} of secret {str(ref.get('name'))!r} {what}: no code can match it, so "
            "every request to the collection health endpoint is refused with 403; put the sha256 hex of the health "
            "code in it (echo -n 'the code' | sha256sum), not the code itself"))
    return digest

