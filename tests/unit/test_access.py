"""The access decision of docs/api.md#who-may, table-driven: role × action × access key × scope × ACL."""

import pytest

from backup_repository.domain import roles as R
from backup_repository.domain.access import Actor, decide, decide_global, parse_scope
from backup_repository.domain.users import AccessKey, ObjectGrant, User

UP, DOWN, ANY, VIEW = R.ACTION_UPLOAD, R.ACTION_DOWNLOAD, R.ACTION_UPLOAD_ANYTIME, R.ACTION_VIEW_PROFILE
C = "col"


def user(roles=(), keys=()):
    return User("alice", roles=tuple(roles), access_keys={k.name: k for k in keys})


def key(name="k", objects=()):
    return AccessKey(name, "hash", tuple(ObjectGrant(n, t, tuple(r)) for n, t, r in objects))


def acl(*roles, name="alice", kind="user"):
    return (ObjectGrant(name, kind, tuple(roles)),)


def scope(*elements):
    return tuple(ObjectGrant(n, t, tuple(r)) for n, t, r in elements)


# (user roles, collection ACL, action, expected) — no key, no scope
ROLE_TABLE = [
    ((), (), UP, False), ((), (), DOWN, False),
    (("backupUploader",), (), UP, True), (("backupUploader",), (), DOWN, False), (("backupUploader",), (), ANY, False),
    (("backupDownloader",), (), DOWN, True), (("backupDownloader",), (), UP, False),
    (("uploadsAnytime",), (), UP, True), (("uploadsAnytime",), (), ANY, True), (("uploadsAnytime",), (), DOWN, False),
    (("collectionManager",), (), UP, True), (("collectionManager",), (), DOWN, True),
    (("collectionManager",), (), ANY, True), (("collectionManager",), (), VIEW, False),
    (("systemAdmin",), (), UP, True), (("systemAdmin",), (), DOWN, True), (("systemAdmin",), (), ANY, True),
    (("systemAdmin",), (), VIEW, True),
    (("userManager",), (), UP, False), (("userManager",), (), VIEW, True), (("usersManager",), (), VIEW, True),
    ((), acl("backupUploader"), UP, True), ((), acl("backupUploader"), DOWN, False),
    ((), acl("backupDownloader"), DOWN, True), ((), acl("collectionManager"), ANY, True),
    ((), acl("backupUploader", name="bob"), UP, False),          # ACL of another user
    ((), acl("backupUploader", kind="group"), UP, False),        # not a user entry
    (("backupDownloader",), acl("backupUploader"), UP, True),    # ACL and roles add up
    (("backupDownloader",), acl("backupUploader"), DOWN, True),
]


@pytest.mark.parametrize("roles, collection_acl, action, expected", ROLE_TABLE)
def test_roles_and_acl(roles, collection_acl, action, expected):
    assert decide(Actor(user(roles)), action, C, collection_acl) is expected


# (user roles, ACL, key objects, action, expected) — logged in as user$k
KEY_TABLE = [
    (("systemAdmin",), (), [(C, "collection", ["backupUploader"])], UP, True),
    (("systemAdmin",), (), [(C, "collection", ["backupUploader"])], DOWN, False),   # key narrows an admin
    (("systemAdmin",), (), [("other", "collection", ["backupUploader"])], UP, False),  # key is for another collection
    (("systemAdmin",), (), [], UP, False),                                          # key grants nothing
    ((), (), [(C, "collection", ["backupUploader"])], UP, False),                   # key cannot widen the user
    ((), acl("backupUploader"), [(C, "collection", ["backupUploader"])], UP, True),
    ((), acl("backupUploader"), [(C, "collection", ["collectionManager"])], DOWN, False),  # user lacks download
    (("collectionManager",), (), [(C, "collection", ["collectionManager"])], ANY, True),
    (("collectionManager",), (), [(C, "user", ["collectionManager"])], UP, False),  # wrong object type
]


@pytest.mark.parametrize("roles, collection_acl, objects, action, expected", KEY_TABLE)
def test_access_keys_only_narrow(roles, collection_acl, objects, action, expected):
    actor = Actor(user(roles, keys=[key(objects=objects)]), access_key_name="k")
    assert decide(actor, action, C, collection_acl) is expected


def test_unknown_access_key_denies():
    actor = Actor(user(("systemAdmin",)), access_key_name="missing")
    assert decide(actor, UP, C) is False


# (user roles, ACL, scope elements, action, expected) — a token with operationsScope
SCOPE_TABLE = [
    (("systemAdmin",), (), [(C, "collection", ["backupDownloader"])], DOWN, True),
    (("systemAdmin",), (), [(C, "collection", ["backupDownloader"])], UP, False),
    (("systemAdmin",), (), [("other", "collection", ["collectionManager"])], UP, False),
    ((), (), [(C, "collection", ["collectionManager"])], UP, False),                 # scope cannot widen
    ((), acl("backupUploader"), [(C, "collection", ["backupUploader"])], UP, True),
    (("backupUploader",), (), [(C, "collection", ["uploadsAnytime"])], ANY, False),   # user lacks upload-anytime
    (("collectionManager",), (), [(C, "collection", ["uploadsAnytime"])], ANY, True),
    (("collectionManager",), (), [(C, "collection", ["backupUploader"]), (C, "collection", ["backupDownloader"])],
     DOWN, True),                                                                     # any matching element grants
]


@pytest.mark.parametrize("roles, collection_acl, elements, action, expected", SCOPE_TABLE)
def test_scopes_only_narrow(roles, collection_acl, elements, action, expected):
    actor = Actor(user(roles), scope=scope(*elements))
    assert decide(actor, action, C, collection_acl) is expected


def test_key_and_scope_together_both_must_grant():
    k = key(objects=[(C, "collection", ["backupUploader", "backupDownloader"])])
    actor = Actor(user(("collectionManager",), keys=[k]), "k", scope(*[(C, "collection", ["backupDownloader"])]))
    assert decide(actor, DOWN, C) is True
    assert decide(actor, UP, C) is False


def test_global_decisions_use_the_users_roles():
    assert decide_global(Actor(user(("userManager",))), VIEW)
    assert decide_global(Actor(user(("systemAdmin",))), VIEW)
    assert not decide_global(Actor(user(("collectionManager",))), VIEW)


def test_has_role_is_true_for_system_admin():
    assert R.has_role(("systemAdmin",), "backupUploader")
    assert R.has_role(("backupUploader",), "backupUploader")
    assert not R.has_role(("collectionManager",), "userManager")


@pytest.mark.parametrize("elements", ["x", [1], [{"type": "collection", "name": "c"}],
                                      [{"type": "collection", "name": "c", "roles": "backupUploader"}]])
def test_malformed_scopes_are_rejected(elements):
    with pytest.raises(ValueError):
        parse_scope(elements)
