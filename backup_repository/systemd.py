"""systemd's readiness protocol (sd_notify): tell the service manager when the server is ready and stopping.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET``; the server sends ``READY=1`` once it listens and
``STOPPING=1`` when it begins a graceful stop. Without ``NOTIFY_SOCKET`` nothing is sent.
"""

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str, environ=None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd; True when it was sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", address.lstrip("\0"), exc)
        return False
    return True
