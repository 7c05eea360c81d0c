"""Names of users, collections, secrets and access keys.

Users, collections and secrets are Kubernetes objects in the original, so their names follow the Kubernetes rules
(RFC 1123 subdomain: lowercase letters, digits, ``-`` and ``.``, starting and ending with a letter or digit, at
most 253 characters). Access keys are not objects; their names are letters, digits, ``.``, ``_`` and ``-``.
Names end up in object paths of the blob store and in log lines, so nothing else is ever accepted.
"""

import re

_OBJECT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

OBJECT_NAME_RULE = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253"
KEY_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63"


def is_object_name(name) -> bool:
    return isinstance(name, str) and len(name) <= 253 and _OBJECT.fullmatch(name) is not None


def is_key_name(name) -> bool:
    return isinstance(name, str) and _KEY.fullmatch(name) is not None
