"""Upgrading from the Go server on a real kube-apiserver (tests/kube_cluster.py): its CRDs, installed by its Helm
chart, with its example resources present, are replaced by ours the way docs/kubernetes.md says (server-side apply,
strict field validation, conflicts forced) without losing a resource; and a server started while the Go server's
CRDs (no status subresource) were installed writes status once they are upgraded, without waiting for an upload."""

import pytest
import yaml

from tests import kube_cluster
from tests.integration.collections_config import PASSWORD, version_path
from tests.integration.test_kube_provider import NS, ROLE, API, apply, binding, secret, user
from tests.support import GO_ADMIN_HASH, ROOT, ConfigDir, pgp_message, wait_until

TOOLS = kube_cluster.require_tools(module_level=True)
CRDS = ROOT / "packaging" / "kubernetes" / "crds"

#: The Go server's CRDs as its Helm chart (v4) installs them, written out field by field: the same group, names,
#: short names, required fields and enums; a schema without accessKeys or minimumRetention, and no status
#: subresource.
GO_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backupcollections.backups.riotkit.org
  annotations: {helm.sh/resource-policy: keep}
spec:
  group: backups.riotkit.org
  scope: Namespaced
  names: {plural: backupcollections, singular: backupcollection, kind: BackupCollection,
          shortNames: [brcollections, brc], categories: [backuprepository]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [description, filenameTemplate, maxBackupsCount, maxOneVersionSize, maxCollectionSize,
                         strategyName, strategySpec]
              properties:
                description: {type: string}
                filenameTemplate: {type: string}
                maxBackupsCount: {type: integer}
                maxOneVersionSize: {type: string, pattern: '([0-9]+)(B|K|M|G|T)'}
                maxCollectionSize: {type: string, pattern: '([0-9]+)(B|K|M|G|T)'}
                windows:
                  type: array
                  items:
                    type: object
                    properties:
                      from: {type: string}
                      duration: {type: string, pattern: '([0-9]+)(m|h)'}
                strategyName: {type: string, enum: [fifo, fifo-plus-older]}
                strategySpec:
                  type: object
                  properties:
                    keepLastOlderNotMoreThan: {type: string}
                    maxOlderCopies: {type: integer}
                healthSecretRef:
                  type: object
                  required: [name, entry]
                  properties: {name: {type: string}, entry: {type: string}}
                accessControl:
                  type: array
                  items:
                    type: object
                    properties:
                      userName: {type: string}
                      roles:
                        type: array
                        items: {type: string, enum: [collectionManager, backupUploader, backupDownloader,
                                                     uploadsAnytime]}
      additionalPrinterColumns:
        - {name: Strategy, type: string, jsonPath: .spec.strategyName}
        - {name: Max backups count, type: string, jsonPath: .spec.maxBackupsCount}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backupusers.backups.riotkit.org
  annotations: {helm.sh/resource-policy: keep}
spec:
  group: backups.riotkit.org
  scope: Namespaced
  names: {plural: backupusers, singular: backupuser, kind: BackupUser, shortNames: [brusers, bru],
          categories: [backuprepository]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [email, roles]
              properties:
                email: {type: string}
                deactivated: {type: boolean}
                organization: {type: string}
                about: {type: string}
                password: {type: string}
                passwordFromRef:
                  type: object
                  required: [name, entry]
                  properties: {name: {type: string}, entry: {type: string}}
                restrictByIP: {type: array, items: {type: string}}
                roles:
                  type: array
                  items: {type: string, enum: [collectionManager, usersManager, systemAdmin, backupUploader,
                                               backupDownloader, uploadsAnytime]}
      additionalPrinterColumns:
        - {name: Email, type: string, jsonPath: .spec.email}
"""

#: The Go server's example resources (its docs), as its users have them in their clusters.
GO_COLLECTION = {
    "description": "IWA-AIT website files", "filenameTemplate": "iwa-ait-${version}.tar.gz", "maxBackupsCount": 5,
    "maxOneVersionSize": "1M", "maxCollectionSize": "10M", "windows": [{"from": "*/30 * * * *", "duration": "30m"}],
    "strategyName": "fifo", "strategySpec": {"keepLastOlderNotMoreThan": "5d", "maxOlderCopies": 2},
    "accessControl": [{"userName": "admin", "roles": ["collectionManager"]}],
}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = kube_cluster.ControlPlane(str(tmp_path_factory.mktemp("kube-upgrade")), TOOLS)
    plane.start()
    try:
        for manifest in yaml.safe_load_all(GO_CRDS):  # as Helm creates them: its own field manager
            response = plane.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=manifest,
                                 params={"fieldManager": "helm"})
            assert response.status_code == 201, response.text
            plane._served(manifest, 30)
        for path, body in (("/api/v1/namespaces", {"metadata": {"name": NS}}),
                           (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", ROLE),
                           binding("backup-repository", kube_cluster.LIMITED_USER)):
            response = plane.api("POST", path, json=body)
            assert response.status_code == 201, response.text
        yield plane
    finally:
        plane.stop()


def test_upgrading_from_the_go_servers_crds_keeps_every_resource_and_status_follows(kube, tmp_path, make_backend,
                                                                                     start_server):
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH))
    apply(kube, "BackupUser", "admin", user("admin"))
    apply(kube, "BackupCollection", "iwa-ait", {"spec": GO_COLLECTION})
    before = kube.api("GET", f"{API}/backupcollections/iwa-ait").json()
    kubeconfig = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), token=kube.limited_token, namespace=NS)
    server = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                          "--provider=kubernetes", f"--kubeconfig={kubeconfig}", f"--namespace={NS}")
    token = server.login("admin", PASSWORD)
    upload = server.request("POST", version_path("iwa-ait"), token, data=pgp_message(b"before the upgrade"))
    assert upload.status_code == 200, upload.text
    assert wait_until(lambda: "has no status subresource" in server.log(), timeout=20), server.log()[-2000:]
    assert "status" not in kube.api("GET", f"{API}/backupcollections/iwa-ait").json()

    # the upgrade as docs/kubernetes.md#upgrading-from-the-go-server says: server-side, strictly validated; the
    # fields Helm set conflict until they are taken over (--force-conflicts)
    text = (CRDS / "backupcollections.backups.riotkit.org.yaml").read_text()
    refused = kube.api("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                "backupcollections.backups.riotkit.org",
                       data=text.encode(), params={"fieldManager": "kubectl", "fieldValidation": "Strict"},
                       headers={"Content-Type": "application/apply-patch+yaml"})
    assert refused.status_code == 409, refused.text
    assert {cause["message"] for cause in refused.json()["details"]["causes"]} == {
        'conflict with "helm" using apiextensions.k8s.io/v1'}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = kube.apply_crd(path.read_text())  # fieldValidation=Strict, force=true
        assert set(yaml.safe_load(path.read_text())["spec"]["names"]["shortNames"]) <= set(
            crd["spec"]["names"]["shortNames"])  # ours now (bu, bc)
    crd = kube.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                          "backupcollections.backups.riotkit.org").json()
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    after = kube.api("GET", f"{API}/backupcollections/iwa-ait").json()
    assert after["spec"] == before["spec"] and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert kube.api("GET", f"{API}/backupusers/admin").status_code == 200

    def status():
        current = kube.api("GET", f"{API}/backupcollections/iwa-ait").json().get("status") or {}
        return current if current.get("versionsCount") == 1 else None

    written = wait_until(status, timeout=25)  # no upload in between: the publisher noticed the subresource
    assert written, kube.api("GET", f"{API}/backupcollections/iwa-ait").json()
    assert "the status subresource exists now" in server.log()
    assert server.login("admin", PASSWORD)
    server.stop()
    assert server.proc.returncode == 0 and "Traceback" not in server.log(), server.log()[-3000:]
