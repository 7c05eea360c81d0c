"""Roles, their inheritance and the actions they grant (docs/api.md#who-may)."""

SYSTEM_ADMIN = "systemAdmin"
USER_MANAGER = "userManager"
COLLECTION_MANAGER = "collectionManager"
BACKUP_UPLOADER = "backupUploader"
BACKUP_DOWNLOADER = "backupDownloader"
UPLOADS_ANYTIME = "uploadsAnytime"

ALL_ROLES = frozenset(
    {SYSTEM_ADMIN, USER_MANAGER, COLLECTION_MANAGER, BACKUP_UPLOADER, BACKUP_DOWNLOADER, UPLOADS_ANYTIME}
)

#: Spellings found in the original's CRD and examples, mapped to the canonical role.
ALIASES = {"usersManager": USER_MANAGER}

ACTION_UPLOAD = "file.upload"
ACTION_DOWNLOAD = "file.download"
ACTION_UPLOAD_ANYTIME = "file.upload-anytime"
ACTION_VIEW_PROFILE = "profile.view"

_INHERITS = {
    SYSTEM_ADMIN: (USER_MANAGER, COLLECTION_MANAGER),
    COLLECTION_MANAGER: (BACKUP_UPLOADER, BACKUP_DOWNLOADER, UPLOADS_ANYTIME),
}

_ACTIONS = {
    BACKUP_UPLOADER: (ACTION_UPLOAD,),
    BACKUP_DOWNLOADER: (ACTION_DOWNLOAD,),
    UPLOADS_ANYTIME: (ACTION_UPLOAD, ACTION_UPLOAD_ANYTIME),
    USER_MANAGER: (ACTION_VIEW_PROFILE,),
}


def normalize_role(name: str) -> str:
    """Return the canonical spelling of a role (``usersManager`` -> ``userManager``)."""
    return ALIASES.get(name, name)


def is_known_role(name: str) -> bool:
    return normalize_role(name) in ALL_ROLES


def expand_roles(roles) -> frozenset:
    """All roles held through ``roles``, inherited ones included."""
    seen = set()
    pending = [normalize_role(role) for role in roles]
    while pending:
        role = pending.pop()
        if role in seen:
            continue
        seen.add(role)
        pending.extend(_INHERITS.get(role, ()))
    return frozenset(seen)


def actions_of(roles) -> frozenset:
    """Every action that any of ``roles`` (with inheritance) grants."""
    return frozenset(action for role in expand_roles(roles) for action in _ACTIONS.get(role, ()))


def can_perform(roles, action: str) -> bool:
    return action in actions_of(roles)


def has_role(roles, role: str) -> bool:
    """True for the role itself or for systemAdmin, as in the original."""
    normalized = {normalize_role(r) for r in roles}
    return normalize_role(role) in normalized or SYSTEM_ADMIN in normalized
