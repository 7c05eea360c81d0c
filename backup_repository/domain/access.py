"""The access decision of docs/api.md#who-may: may this actor do this action on this collection?

An actor is a user, optionally logged in through one of its access keys, optionally holding a token whose
``operationsScope`` narrows it further. Keys and scopes can only narrow what the user already has.
"""

from dataclasses import dataclass
from typing import Optional

from backup_repository.domain import roles as R
from backup_repository.domain.users import ObjectGrant, User

COLLECTION = "collection"
USER = "user"


@dataclass(frozen=True)
class Actor:
    user: User
    access_key_name: str = ""
    scope: tuple = ()  # ObjectGrant elements of the token's operationsScope

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def is_restricted(self) -> bool:
        """Logged in with an access key, or holding a scoped token: limited to collections (docs/api.md#tokens)."""
        return bool(self.access_key_name or self.scope)


def decide(actor: Actor, action: str, collection_id: str, acl=()) -> bool:
    """Return True when ``actor`` may perform ``action`` on collection ``collection_id``.

    ``acl`` is the collection's ``accessControl`` (a sequence of ObjectGrant with type ``user``).
    """
    # 1. Logged in with an access key: the key must grant the action on this very collection.
    if actor.access_key_name:
        key = actor.user.access_key(actor.access_key_name)
        if key is None or not R.can_perform(key.roles_on(COLLECTION, collection_id), action):
            return False

    # 2. A scoped token: an element naming this collection must grant the action.
    if actor.scope:
        scoped = [g for g in actor.scope if g.type == COLLECTION and g.name == collection_id]
        if not any(R.can_perform(g.roles, action) for g in scoped):
            return False

    # 3. The collection's ACL or the user's own roles must grant it.
    for grant in acl:
        if grant.type == USER and grant.name == actor.name and R.can_perform(grant.roles, action):
            return True
    return R.can_perform(actor.user.roles, action)


def may_act_globally(actor: Actor) -> bool:
    """Global actions — viewing profiles, listing sessions, revoking a session other than the caller's own — need
    a login with the user's own password and no scope: a key or a scope only ever narrows (docs/api.md#tokens)."""
    return not actor.is_restricted


def decide_global(actor: Actor, action: str) -> bool:
    """A decision outside any collection (e.g. viewing others' profiles): an unrestricted login whose user's own
    roles grant it."""
    return may_act_globally(actor) and R.can_perform(actor.user.roles, action)


def parse_scope(elements) -> tuple:
    """Validate the ``elements`` of an ``operationsScope``; raise ValueError when malformed."""
    if elements is None:
        return ()
    if not isinstance(elements, list):
        raise ValueError("operationsScope.elements must be a list")
    result = []
    for element in elements:
        if not isinstance(element, dict):
            raise ValueError("each operationsScope element must be an object with type, name and roles")
        kind, name, roles = element.get("type"), element.get("name"), element.get("roles")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(roles, list):
            raise ValueError("each operationsScope element needs type (string), name (string) and roles (list)")
        if not all(isinstance(role, str) for role in roles):
            raise ValueError("operationsScope roles must be strings")
        result.append(ObjectGrant(name=name, type=kind, roles=tuple(R.normalize_role(r) for r in roles)))
    return tuple(result)


def scope_to_json(scope: tuple) -> Optional[dict]:
    if not scope:
        return None
    return {"elements": [{"type": g.type, "name": g.name, "roles": list(g.roles)} for g in scope]}
