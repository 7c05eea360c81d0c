"""The status a BackupCollection shows to kubectl users (config/kubernetes.status_document, docs/kubernetes.md#status):
the fields of the CRD's status schema, written from the CollectionStatus that the collection service computes."""

from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from backup_repository.config.kubernetes import status_document
from backup_repository.domain.collections import CollectionStatus, Usage

CRD = (Path(__file__).resolve().parents[2] / "packaging" / "kubernetes" / "crds"
       / "backupcollections.backups.riotkit.org.yaml")
LATEST = datetime(2026, 11, 27, 12, 0, 0, 654321, tzinfo=timezone.utc)
HEALTHY = CollectionStatus(Usage(3, 3 * 512 << 20, LATEST))
UNHEALTHY = CollectionStatus(Usage(0, 0, None), (("BackupWindowValidator", "no backup in the window"),
                                                 ("IntegrityValidator", "stored objects failed verification: v3")))


def status_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    [version] = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]


def test_a_status_is_written_as_before():
    assert status_document(HEALTHY) == {"versionsCount": 3, "usedBytes": 1610612736, "used": "1.5GiB",
                                        "healthy": True, "message": "", "latestVersionAt": "2026-11-27T12:00:00Z"}
    assert status_document(UNHEALTHY) == {
        "versionsCount": 0, "usedBytes": 0, "used": "0B", "healthy": False,
        "message": "BackupWindowValidator: no backup in the window; IntegrityValidator: stored objects failed "
                   "verification: v3"}


@pytest.mark.parametrize("status", [HEALTHY, UNHEALTHY], ids=["healthy", "unhealthy"])
def test_a_status_has_only_fields_of_the_crd(status):
    """The API server prunes a field its schema does not know: a renamed one would vanish without an error."""
    schema = status_schema()
    document = status_document(status)
    assert set(document) <= set(schema["properties"])
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
