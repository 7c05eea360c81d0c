"""The checks behind ``GET /api/stable/repository/collection/{id}/health`` (docs/api.md#collection-health),
as plain functions."""

from collections.abc import Sequence

from backup_repository.domain.versions import free_from, retention_blocks_next_upload
from backup_repository.domain.windows import check_latest_backup
from backup_repository.health.checks import CheckResult


def retention_problem(collection, versions, now):
    """MinimumRetentionValidator's finding: the next upload would be refused because the collection is full of
    versions its minimumRetention protects (docs/api.md#minimum-retention); None when it would not be."""
    until = retention_blocks_next_upload(collection, versions, now)
    if until is None:
        return None
    return (f"collection is full of protected versions: the next upload will be refused until "
            f"{free_from(until)} (minimumRetention)")


def collection_checks(collection, versions, now) -> list:
    """BackupWindowValidator, VersionsSizeValidator and SumOfVersionsValidator for a collection's versions, and
    MinimumRetentionValidator for a collection with a minimumRetention."""
    latest = max(versions, key=lambda v: v.number).created_at if versions else None
    window_problem = check_latest_backup(collection.windows, latest, now)

    size_problem = None
    for version in sorted(versions, key=lambda v: v.number):
        if version.size > collection.max_one_version_size:
            size_problem = (f"maximum filesize is bigger than collection soft limit per file. "
                            f"Failed file: {version.filename} (size={version.size}b)")
            break

    total = sum(v.size for v in versions)
    sum_problem = None
    if total > collection.max_collection_size:
        sum_problem = f"Summary of all files is {total}b, while collection hard limit is {collection.max_collection_size}b"

    checks = [
        ("BackupWindowValidator", window_problem),
        ("VersionsSizeValidator", size_problem),
        ("SumOfVersionsValidator", sum_problem),
    ]
    if collection.minimum_retention is not None:
        checks.append(("MinimumRetentionValidator", retention_problem(collection, versions, now)))
    return [CheckResult(name, problem is None, problem or "OK") for name, problem in checks]


def storage_consistency_check(missing: Sequence, kept: Sequence = ()) -> CheckResult:
    """StorageConsistencyValidator: every registered version still has its object in the storage, and the store
    has not refused to delete the object of a deleted version (``kept``: db PendingDeletion records that failed at
    least once; the janitor retries them)."""
    problems = []
    if missing:
        problems.append("versions registered without their object in the storage: "
                        + ", ".join(f"v{v.number} ({v.filename})" for v in missing))
    if kept:
        problems.append("objects of deleted versions still in the storage (the janitor retries): "
                        + ", ".join(f"v{d.version_number} ({d.object_name}): {d.last_error}" for d in kept))
    if not problems:
        return CheckResult("StorageConsistencyValidator", True, "OK")
    return CheckResult("StorageConsistencyValidator", False, "; ".join(problems))


def integrity_check(problems: list) -> CheckResult:
    """IntegrityValidator: the last verification (--verify or --verify-interval) found every object intact."""
    if not problems:
        return CheckResult("IntegrityValidator", True, "OK")
    return CheckResult("IntegrityValidator", False, "stored objects failed verification: " + "; ".join(problems))
