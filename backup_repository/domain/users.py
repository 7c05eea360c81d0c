"""Users and their access keys, as read from BackupUser documents."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True, slots=True)
class ObjectGrant:
    """Roles granted on one object (a collection) — used by access keys, scopes and collection ACLs."""

    name: str
    type: str
    roles: tuple


@dataclass(frozen=True, slots=True)
class AccessKey:
    """A second password of a user, limited to the objects it lists (login as ``user$key``)."""

    name: str
    password_hash: Optional[str]
    objects: tuple = ()
    restrict_by_ip: tuple = ()

    def roles_on(self, object_type: str, object_name: str) -> tuple:
        roles = []
        for grant in self.objects:
            if grant.type == object_type and grant.name == object_name:
                roles.extend(grant.roles)
        return tuple(roles)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    email: str = ""
    deactivated: bool = False
    organization: str = ""
    about: str = ""
    password_hash: Optional[str] = None
    roles: tuple = ()
    restrict_by_ip: tuple = ()
    access_keys: dict = field(default_factory=dict)

    def access_key(self, name: str) -> Optional[AccessKey]:
        return self.access_keys.get(name)
