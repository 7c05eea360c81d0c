"""Users and their access keys, as read from BackupUser documents."""

import ipaddress
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class ObjectGrant:
    """Roles granted on one object (a collection) — used by access keys, scopes and collection ACLs."""

    name: str
    type: str
    roles: tuple


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def parse_networks(values) -> tuple:
    """Turn a list of IPs and CIDRs into networks; raise ValueError naming the first bad entry."""
    networks = []
    for value in values or ():
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return tuple(networks)


def address_allowed(networks: tuple, address: str) -> bool:
    """True when no restriction is set, or ``address`` is inside one of ``networks``."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)
