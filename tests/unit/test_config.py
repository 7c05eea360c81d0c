"""Configuration documents: parsing, aliases, secrets, and problems that name the file and the field."""

import pytest

from backup_repository.config.filesystem import read_snapshot
from backup_repository.domain import roles as R
from backup_repository.domain.networks import address_allowed
from tests.support import COLLECTIONS, GO_ADMIN_HASH, SECRETS, USERS, ConfigDir

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: passwords
data:
  alice: "{hash}"
stringData:
  health: "abc123"
"""

COLLECTION = """apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
  name: {name}
spec:
  description: test
  filenameTemplate: {template}
  maxBackupsCount: 3
  maxOneVersionSize: 1M
  maxCollectionSize: {total}
  windows:
    - from: "{cron}"
      duration: 30m
  strategyName: {strategy}
  strategySpec:
    keepLastOlderNotMoreThan: 5d
    maxOlderCopies: 2
  healthSecretRef:
    name: passwords
    entry: health
  accessControl:
{acl}
"""


def collection(name="c1", template="c-${{version}}.gpg", total="5M", cron="0 1 * * *", strategy="fifo",
               acl="    - userName: alice\n      roles: [backupUploader]"):
    return COLLECTION.format(name=name, template=template.replace("{{", "{").replace("}}", "}"), total=total,
                             cron=cron, strategy=strategy, acl=acl)


@pytest.fixture
def cfg(tmp_path):
    c = ConfigDir(tmp_path, copy_examples=False)
    c.write(SECRETS, "passwords", SECRET.format(hash=GO_ADMIN_HASH))
    return c


def problems_of(snapshot):
    return [str(p) for p in snapshot.problems]


def test_examples_shipped_in_docs_are_clean():
    from tests.support import EXAMPLES, NAMESPACE

    snapshot = read_snapshot(str(EXAMPLES / NAMESPACE))
    assert snapshot.problems == ()
    assert set(snapshot.users) == {"admin", "uploader"}
    assert set(snapshot.collections) == {"iwa-ait"}


def test_user_with_password_from_secret_and_aliases(cfg):
    cfg.write(USERS, "alice", """apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata: {name: alice}
spec:
  email: alice@example.org
  password: "inline-is-overridden"
  passwordFromRef: {name: passwords, entry: alice}
  roles: [usersManager, backupDownloader]
  restrictByIP: ["10.0.0.0/8", "192.168.1.5", "fd00::/8"]
  accessKeys:
    - name: ci
      password: "keyhash"
      objects:
        - {name: c1, type: collection, roles: [backupUploader]}
""")
    snapshot = read_snapshot(str(cfg.ns))
    alice = snapshot.users["alice"]
    assert alice.password_hash == GO_ADMIN_HASH
    assert alice.roles == ("usersManager", "backupDownloader")  # as written; decisions normalize
    assert R.has_role(alice.roles, R.USER_MANAGER)
    assert alice.access_key("ci").password_hash == "keyhash"
    assert alice.access_key("ci").roles_on("collection", "c1") == ("backupUploader",)
    assert address_allowed(alice.restrict_by_ip, "10.1.2.3")
    assert address_allowed(alice.restrict_by_ip, "192.168.1.5")
    assert address_allowed(alice.restrict_by_ip, "fd00::1")
    assert not address_allowed(alice.restrict_by_ip, "192.168.1.6")
    assert snapshot.problems == ()


def test_access_keys_in_the_form_of_the_go_servers_docs(cfg):
    """``collections: [...]`` and ``roles`` on an access key (docs/examples/user.second-actor.yaml of the Go server)."""
    cfg.write(USERS, "some-user", """apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata: {name: some-user}
spec:
  email: user@example.org
  password: "userhash"
  accessKeys:
    - name: uploader
      collections: ["iwa-ait", "other"]
      roles: ["backupUploader"]
      password: "keyhash"
  roles: [collectionManager]
""")
    key = read_snapshot(str(cfg.ns)).users["some-user"].access_key("uploader")
    assert key.roles_on("collection", "iwa-ait") == key.roles_on("collection", "other") == ("backupUploader",)
    assert key.roles_on("collection", "third") == ()


def test_collection_fields_and_both_acl_forms(cfg):
    cfg.write(COLLECTIONS, "c1", collection(acl="    - userName: alice\n      roles: [backupUploader]\n"
                                               "    - name: bob\n      type: user\n      roles: [backupDownloader]"))
    cfg.user("alice", GO_ADMIN_HASH)
    cfg.user("bob", GO_ADMIN_HASH)
    snapshot = read_snapshot(str(cfg.ns))
    c1 = snapshot.collections["c1"]
    assert (c1.max_backups_count, c1.max_one_version_size, c1.max_collection_size) == (3, 1 << 20, 5 << 20)
    assert c1.windows[0].cron == "0 1 * * *" and c1.windows[0].duration == 1800
    assert c1.keep_last_older_not_more_than == 5 * 86400 and c1.max_older_copies == 2
    assert c1.health_code_sha256 == "abc123"
    assert [(g.name, g.type, g.roles) for g in c1.access_control] == [
        ("alice", "user", ("backupUploader",)), ("bob", "user", ("backupDownloader",))]
    assert c1.filename_for(7) == "c-7.gpg"
    assert snapshot.problems == ()


@pytest.mark.parametrize("kwargs, field, fragment", [
    ({"template": "no-version.gpg"}, "spec.filenameTemplate", "${version}"),
    ({"template": "dir/c-${{version}}"}, "spec.filenameTemplate", "path separator"),
    ({"total": "2M"}, "spec.maxCollectionSize", "smaller than"),
    ({"total": "5X"}, "spec.maxCollectionSize", "invalid size"),
    ({"cron": "61 * * * *"}, "spec.windows[0].from", "cron"),
    ({"strategy": "lifo"}, "spec.strategyName", "unknown strategy"),
])
def test_broken_collection_is_left_out_and_named(cfg, kwargs, field, fragment):
    cfg.write(COLLECTIONS, "bad", collection(name="bad", **kwargs))
    cfg.write(COLLECTIONS, "good", collection(name="good"))
    cfg.user("alice", GO_ADMIN_HASH)
    snapshot = read_snapshot(str(cfg.ns))
    assert "bad" not in snapshot.collections and "good" in snapshot.collections
    [problem] = [p for p in problems_of(snapshot) if "bad.yaml" in p]
    assert f"bad.yaml: {field}:" in problem and fragment in problem


def test_unparsable_yaml_breaks_only_its_object(cfg):
    cfg.user("alice", GO_ADMIN_HASH)
    cfg.write(USERS, "broken", "apiVersion: v1\nkind: BackupUser\nspec: [unclosed\n")
    snapshot = read_snapshot(str(cfg.ns))
    assert "alice" in snapshot.users and "broken" not in snapshot.users
    assert any("broken.yaml" in p and "not valid YAML" in p for p in problems_of(snapshot))


def test_missing_secret_disables_login_but_keeps_the_user(cfg):
    cfg.write(USERS, "carol", """apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata: {name: carol}
spec:
  passwordFromRef: {name: nope, entry: carol}
""")
    snapshot = read_snapshot(str(cfg.ns))
    assert snapshot.users["carol"].password_hash is None
    assert any("carol.yaml: spec.passwordFromRef.name: secret 'nope' does not exist" in p
               for p in problems_of(snapshot))


def test_wrong_kind_bad_ip_and_unknown_role_are_reported(cfg):
    cfg.write(USERS, "wrongkind", "apiVersion: v1\nkind: Secret\nmetadata: {name: wrongkind}\n")
    cfg.user("dave", GO_ADMIN_HASH, roles=["superuser"])
    cfg.user("erin", GO_ADMIN_HASH, extra="  restrictByIP: [not-an-ip]\n")
    snapshot = read_snapshot(str(cfg.ns))
    found = problems_of(snapshot)
    assert any("wrongkind.yaml: kind:" in p for p in found)
    assert any("dave.yaml: spec.roles[0]: unknown role 'superuser'" in p for p in found)
    assert any("erin.yaml: spec.restrictByIP:" in p and "not-an-ip" in p for p in found)
    assert "dave" in snapshot.users and "erin" not in snapshot.users


def test_acl_naming_an_unknown_user_is_reported(cfg):
    cfg.write(COLLECTIONS, "c1", collection())
    snapshot = read_snapshot(str(cfg.ns))
    assert any("c1.yaml: spec.accessControl[0]: unknown user 'alice'" in p for p in problems_of(snapshot))


def test_missing_directory_is_a_problem_not_a_crash(tmp_path):
    snapshot = read_snapshot(str(tmp_path / "nope"))
    assert snapshot.users == {} and any("does not exist" in p for p in problems_of(snapshot))


def test_documents_from_any_source_go_through_the_same_parser():
    """The Kubernetes provider hands API objects to build_snapshot; a problem names namespace/kind/name and field."""
    from backup_repository.config.documents import make_document
    from backup_repository.config.provider import build_snapshot

    problems = []
    user = make_document("alice", "backups/BackupUser/alice", {
        "apiVersion": "backups.riotkit.org/v1alpha1", "kind": "BackupUser", "metadata": {"name": "alice"},
        "spec": {"email": "alice@example.org", "passwordFromRef": {"name": "pw", "entry": "alice"}}}, "BackupUser",
        problems)
    secret = make_document("pw", "backups/Secret/pw", {"kind": "Secret", "data": {"alice": GO_ADMIN_HASH}},
                           "Secret", problems)
    bad = make_document("broken", "backups/BackupCollection/broken", {
        "kind": "BackupCollection", "spec": {"filenameTemplate": "x", "maxBackupsCount": 1}}, "BackupCollection",
        problems)
    wrong_kind = make_document("w", "backups/BackupUser/w", {"kind": "Secret"}, "BackupUser", problems)
    snapshot = build_snapshot([secret], [user], [bad], problems)
    assert wrong_kind is None
    assert snapshot.users["alice"].password_hash == GO_ADMIN_HASH
    assert snapshot.collections == {}
    assert [str(p) for p in snapshot.problems] == [
        "backups/BackupUser/w: kind: expected 'BackupUser', found 'Secret'",
        "backups/BackupCollection/broken: spec.filenameTemplate: must contain ${version}; the object is not loaded",
    ]


def test_only_what_changed_is_parsed_again(cfg):
    """With the Parser of the last read, unchanged documents keep their parsed objects; an edited file, and the
    documents referring to an edited Secret, are parsed again; a removed file is gone."""
    from backup_repository.config.provider import Parser

    ref = "passwordFromRef: {name: passwords, entry: alice}"
    cfg.user("alice", "", extra=f"  {ref}")
    cfg.user("bob", "bob-hash")
    cfg.user("carol", "carol-hash")
    cfg.write(COLLECTIONS, "c1", collection())
    cfg.write(COLLECTIONS, "c2", collection(name="c2", template="d-${{version}}.gpg"))
    parser = Parser()
    first = read_snapshot(str(cfg.ns), parser)
    assert first.problems == () and first.users["alice"].password_hash == GO_ADMIN_HASH
    assert first.granted == {"alice": ("c1", "c2")}

    cfg.user("bob", "bob-hash-2")
    cfg.remove(USERS, "carol")
    second = read_snapshot(str(cfg.ns), parser)
    assert second.users["bob"].password_hash == "bob-hash-2"
    assert "carol" not in second.users
    assert second.users["alice"] is first.users["alice"]
    assert second.collections["c1"] is first.collections["c1"]

    # a new value in the Secret: alice (password) and both collections (health code) are parsed again
    cfg.write(SECRETS, "passwords", SECRET.format(hash="new-hash").replace("abc123", "def456"))
    third = read_snapshot(str(cfg.ns), parser)
    assert third.users["alice"].password_hash == "new-hash"
    assert third.collections["c1"].health_code_sha256 == "def456"
    assert third.users["bob"] is second.users["bob"]


def test_problems_of_unchanged_documents_are_still_reported(cfg):
    from backup_repository.config.provider import Parser

    cfg.write(COLLECTIONS, "c1", collection(total="1M"))
    cfg.write(USERS, "broken", "kind: [")
    parser = Parser()
    first = problems_of(read_snapshot(str(cfg.ns), parser))
    cfg.user("alice", GO_ADMIN_HASH)
    second = problems_of(read_snapshot(str(cfg.ns), parser))
    assert len(first) == 2 and first == second


def test_warnings_are_kept_apart_from_problems_and_survive_an_incremental_read(cfg):
    """A restricted user and a health entry that is not a sha256 digest are warnings (the objects load); an unchanged
    document still reports its warnings on the next read; a collection that is not loaded gives no warning."""
    from backup_repository.config.provider import Parser

    cfg.user("alice", GO_ADMIN_HASH, extra="  restrictByIP: [1.2.3.4, 10.0.0.0/8]\n")
    cfg.write(COLLECTIONS, "c1", collection())  # health entry "abc123": not a sha256 digest
    cfg.write(COLLECTIONS, "c2", collection(name="c2", template="d-${{version}}.gpg", total="1M"))  # not loaded
    parser = Parser()
    first = read_snapshot(str(cfg.ns), parser)
    assert set(first.users) == {"alice"} and set(first.collections) == {"c1"}
    assert [p.split(": ")[0].rsplit("/", 1)[-1] for p in problems_of(first)] == ["c2.yaml"]
    shown = [str(w) for w in first.warnings]
    assert [w.split(": ", 2)[1] for w in shown] == ["spec.restrictByIP", "spec.healthSecretRef"]
    assert "only from 1.2.3.4, 10.0.0.0/8;" in shown[0] and "'health' of secret 'passwords' is not a sha256" in shown[1]

    cfg.user("bob", GO_ADMIN_HASH)
    second = read_snapshot(str(cfg.ns), parser)
    assert second.users["alice"] is first.users["alice"] and [str(w) for w in second.warnings] == shown


def test_warnings_from_any_source_name_the_object():
    from backup_repository.config.documents import make_document
    from backup_repository.config.provider import build_snapshot

    user = make_document("gone", "backups/BackupUser/gone", {
        "kind": "BackupUser", "spec": {"password": GO_ADMIN_HASH, "deactivated": True}}, "BackupUser", [])
    [warning] = build_snapshot([], [user], []).warnings
    assert str(warning).startswith("backups/BackupUser/gone: spec.deactivated: user 'gone' is deactivated: ")


@pytest.mark.parametrize("text, seconds, fragment", [
    ("7d", 7 * 86400, None),
    ("168h", 168 * 3600, None),
    ("1d12h", 36 * 3600, None),
    ("soon", None, "invalid duration"),
    ("0s", None, "longer than zero"),
    ("-1h", None, "longer than zero"),
])
def test_minimum_retention_is_a_duration_named_in_its_problem(cfg, text, seconds, fragment):
    cfg.write(COLLECTIONS, "c1", collection().replace("  strategyName:", f"  minimumRetention: {text}\n  strategyName:"))
    cfg.write(COLLECTIONS, "c2", collection(name="c2"))
    cfg.user("alice", GO_ADMIN_HASH)
    snapshot = read_snapshot(str(cfg.ns))
    assert snapshot.collections["c2"].minimum_retention is None  # absent: no floor
    if fragment is None:
        assert snapshot.collections["c1"].minimum_retention == seconds and snapshot.problems == ()
    else:
        assert "c1" not in snapshot.collections
        [problem] = problems_of(snapshot)
        assert "c1.yaml: spec.minimumRetention:" in problem and fragment in problem
