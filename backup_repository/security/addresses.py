"""Who is the client: the socket's peer, unless the peer is a trusted reverse proxy.

``X-Forwarded-For`` and ``X-Real-IP`` are believed only when the peer is inside ``--trusted-proxies``: a header
sent by anyone else changes nothing (not rate limits, not ``restrictByIP``, not the address stored on a session).
Behind a chain of trusted proxies, the client is the right-most address of ``X-Forwarded-For`` that is not itself
a trusted proxy.
"""

import ipaddress
import re
from typing import Optional


def _ip(text: str) -> Optional[ipaddress._BaseAddress]:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address, networks) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(peer: str, headers, trusted_proxies: tuple) -> str:
    """The client's address as text (``headers`` is a mapping with ``get``)."""
    peer_ip = _ip(peer or "")
    if peer_ip is None:
        return peer or ""
    if not trusted_proxies or not _trusted(peer_ip, trusted_proxies):
        return str(peer_ip)
    forwarded = headers.get("X-Forwarded-For", "")
    if forwarded:
        closest = peer_ip
        for hop in reversed(forwarded.split(",")):
            hop_ip = _ip(hop)
            if hop_ip is None:
                return str(closest)  # garbage: the last proxy we trust is all we know
            if not _trusted(hop_ip, trusted_proxies):
                return str(hop_ip)
            closest = hop_ip
        return str(closest)
    real = _ip(headers.get("X-Real-IP", ""))
    return str(real) if real is not None else str(peer_ip)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/@-]{1,200}")


def forwarded_request_id(peer: str, headers, trusted_proxies: tuple) -> Optional[str]:
    """The ``X-Request-Id`` a trusted proxy sent (letters, digits and ``._:=+/@-``, at most 200), else None: from
    anyone else it is ignored, so a client cannot put what it likes into the server's log (docs/monitoring.md#logs)."""
    peer_ip = _ip(peer or "")
    if peer_ip is None or not trusted_proxies or not _trusted(peer_ip, trusted_proxies):
        return None
    value = headers.get("X-Request-Id", "").strip()
    return value if _REQUEST_ID.fullmatch(value) else None
