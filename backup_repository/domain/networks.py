"""IP allow-lists: ``restrictByIP`` of users and access keys, and ``--trusted-proxies``."""

import ipaddress


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
