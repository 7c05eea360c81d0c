"""The custom resource definitions of packaging/kubernetes/crds/ on a real kube-apiserver (tests/kube_cluster.py):
they install, the Go server's example documents and ours apply, documents the server would refuse are rejected by
the schema (kubectl apply says so before the server sees them), and the status columns show in a table read."""

import copy

import pytest
import yaml

from tests import kube_cluster, support
from tests.support import EXAMPLES, NAMESPACE as EXAMPLES_NAMESPACE, ROOT

TOOLS = kube_cluster.require_tools(module_level=True)
CRDS = ROOT / "packaging" / "kubernetes" / "crds"
NS = "backups"
GROUP_VERSION = "backups.riotkit.org/v1alpha1"
USERS = f"/apis/{GROUP_VERSION}/namespaces/{NS}/backupusers"
COLLECTIONS = f"/apis/{GROUP_VERSION}/namespaces/{NS}/backupcollections"
#: kubectl validates fields strictly by default (an unknown field is an error, not silently dropped)
STRICT = {"fieldValidation": "Strict"}

#: Documents as the Go server's docs (docs/examples/) give them, unchanged but for their names.
GO_COLLECTION = support.go_example_collection("go-iwa-ait")
GO_USERS = """
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: go-some-user
spec:
    email: user@riseup.net
    deactivated: false
    organization: "Riotkit"
    about: "Example user"
    password: ""
    passwordFromRef:
        name: backup-repository-passwords
        entry: admin
    accessKeys:
        - name: uploader
          collections: ["iwa-ait"]
          roles: ["backupUploader"]
          passwordFromRef:
              name: backup-repository-passwords
              entry: admin_access_key_1
    roles:
        - collectionManager
---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: go-unprivileged
spec:
    email: unprivileged@example.org
    deactivated: false
    organization: "Riotkit"
    about: "Example unprivileged user"
    password: ""
    passwordFromRef:
        name: backup-repository-passwords
        entry: admin
    roles: []
"""


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = kube_cluster.ControlPlane(str(tmp_path_factory.mktemp("kube-crds")), TOOLS)
    plane.start()
    try:
        for path in sorted(CRDS.glob("*.yaml")):
            plane.apply_crd(path.read_text())  # as users install them: kubectl apply --server-side, strict
        created = plane.api("POST", "/api/v1/namespaces", json={"metadata": {"name": NS}})
        assert created.status_code == 201, created.text
        yield plane
    finally:
        plane.stop()


def create(kube, document: dict):
    plural = USERS if document["kind"] == "BackupUser" else COLLECTIONS
    return kube.api("POST", plural, json=document, params=STRICT)


def test_the_crds_apply_again_server_side_and_strictly(kube):
    """An upgrade applies the same way (server-side apply, strict field validation: kubectl's defaults): a field
    the CRD schema language does not know — an unquoted comma in a flow mapping once made one — is refused."""
    for path in sorted(CRDS.glob("*.yaml")):
        kube.apply_crd(path.read_text())
    broken = (CRDS / "backupcollections.backups.riotkit.org.yaml").read_text().replace(
        "message: {type: string,", "message: {type: string, e.g. 1.5GiB,", 1)
    with pytest.raises(RuntimeError, match="e.g. 1.5GiB"):
        kube.apply_crd(broken)


def test_the_crds_keep_the_go_servers_names(kube):
    for plural, kind, short in (("backupusers", "BackupUser", "bu"), ("backupcollections", "BackupCollection", "bc")):
        crd = kube.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.backups.riotkit.org")
        assert crd.status_code == 200, crd.text
        spec = crd.json()["spec"]
        assert (spec["group"], spec["names"]["kind"], spec["scope"]) == ("backups.riotkit.org", kind, "Namespaced")
        assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
        assert short in spec["names"]["shortNames"]


def test_the_go_servers_examples_and_ours_apply(kube):
    documents = list(yaml.safe_load_all(GO_COLLECTION)) + list(yaml.safe_load_all(GO_USERS))
    ours = EXAMPLES / EXAMPLES_NAMESPACE / "backups.riotkit.org" / "v1alpha1"
    documents += [yaml.safe_load(path.read_text()) for path in sorted(ours.rglob("*.yaml"))]
    for document in documents:
        response = create(kube, document)
        assert response.status_code == 201, (document["metadata"]["name"], response.text)
        assert not response.headers.get("Warning"), response.headers.get("Warning")
    # nothing the server reads was pruned on the way: access keys come back as they were sent
    stored = kube.api("GET", f"{USERS}/go-some-user").json()["spec"]["accessKeys"][0]
    assert stored["collections"] == ["iwa-ait"] and stored["roles"] == ["backupUploader"]


VALID = yaml.safe_load("""
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata: {name: placeholder}
spec:
  filenameTemplate: db-${version}.sql.gpg
  maxBackupsCount: 3
  maxOneVersionSize: 1M
  maxCollectionSize: 5M
""")


def collection_with(name: str, **spec) -> dict:
    document = copy.deepcopy(VALID)
    document["metadata"]["name"] = name
    for key, value in spec.items():
        if value is None:
            document["spec"].pop(key)
        else:
            document["spec"][key] = value
    return document


@pytest.mark.parametrize("spec, field", [
    ({"filenameTemplate": None}, "spec.filenameTemplate"),
    ({"filenameTemplate": "no-version.gpg"}, "spec.filenameTemplate"),
    ({"filenameTemplate": "dir/db-${version}.gpg"}, "spec.filenameTemplate"),
    ({"filenameTemplate": ".hidden-${version}"}, "spec.filenameTemplate"),
    ({"maxBackupsCount": 0}, "spec.maxBackupsCount"),
    ({"maxOneVersionSize": "5X"}, "spec.maxOneVersionSize"),
    ({"maxCollectionSize": "lots"}, "spec.maxCollectionSize"),
    ({"strategyName": "lifo"}, "spec.strategyName"),
    ({"windows": [{"from": "* * *", "duration": "1h"}]}, "spec.windows[0].from"),
    ({"windows": [{"from": "0 1 * * *", "duration": "an hour"}]}, "spec.windows[0].duration"),
    ({"accessControl": [{"userName": "a", "roles": ["owner"]}]}, "spec.accessControl[0].roles[0]"),
    ({"healthSecretRef": {"name": "s"}}, "spec.healthSecretRef.entry"),
    ({"minimumRetention": "a week"}, "spec.minimumRetention"),
    ({"minimumRetention": 7}, "spec.minimumRetention"),
    ({"unknownField": 1}, "spec.unknownField"),
])
def test_collections_the_server_would_refuse_are_rejected(kube, spec, field):
    response = create(kube, collection_with(f"bad-{abs(hash(field + str(spec))) % 10**8}", **spec))
    assert response.status_code in (400, 422), response.text
    assert field in response.json()["message"], response.json()["message"]


@pytest.mark.parametrize("spec, field", [
    ({"roles": ["root"]}, "spec.roles[0]"),
    ({"deactivated": "maybe"}, "spec.deactivated"),
    ({"accessKeys": [{"name": "bad name", "password": "x"}]}, "spec.accessKeys[0].name"),
    ({"accessKeys": [{"name": "k", "objects": [{"name": "c", "type": "user"}]}]}, "spec.accessKeys[0].objects[0].type"),
    ({"passwordFromRef": {"entry": "x"}}, "spec.passwordFromRef.name"),
])
def test_users_the_server_would_refuse_are_rejected(kube, spec, field):
    document = {"apiVersion": GROUP_VERSION, "kind": "BackupUser",
                "metadata": {"name": f"bad-user-{abs(hash(field)) % 10**8}"},
                "spec": {"email": "x@example.org", **spec}}
    response = create(kube, document)
    assert response.status_code in (400, 422), response.text
    assert field in response.json()["message"], response.json()["message"]


def test_sizes_as_numbers_and_every_unit_the_server_reads(kube):
    for index, size in enumerate([1048576, "512", "1K", "1KB", "1KiB", "1.5M", "2 GiB", "1T", "1P", "1E"]):
        document = collection_with(f"size-{index}", maxOneVersionSize=size, maxCollectionSize="16E")
        response = create(kube, document)
        assert response.status_code == 201, (size, response.text)


def test_minimum_retention_in_the_syntax_the_server_reads(kube):
    for index, floor in enumerate(["7d", "168h", "1d12h", "90m"]):
        response = create(kube, collection_with(f"floor-{index}", minimumRetention=floor))
        assert response.status_code == 201, (floor, response.text)


def test_the_status_shows_in_the_table_that_kubectl_prints(kube):
    assert create(kube, collection_with("with-status")).status_code == 201
    status = {"status": {"versionsCount": 3, "usedBytes": 1572864, "used": "1.5MiB",
                         "latestVersionAt": "2026-11-27T10:00:00Z", "healthy": True}}
    patched = kube.api("PATCH", f"{COLLECTIONS}/with-status/status", json=status)
    assert patched.status_code == 200, patched.text
    # the status subresource: a write to the object itself does not change the status
    kube.api("PATCH", f"{COLLECTIONS}/with-status", json={"status": {"versionsCount": 99}})
    assert kube.api("GET", f"{COLLECTIONS}/with-status").json()["status"]["versionsCount"] == 3

    table = kube.api("GET", f"{COLLECTIONS}/with-status",
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:8] == ["Name", "Strategy", "Max versions", "Max size", "Versions", "Used", "Last backup",
                           "Healthy"]
    cells = dict(zip(columns, table["rows"][0]["cells"]))
    assert (cells["Versions"], cells["Used"], cells["Healthy"], cells["Max size"]) == (3, "1.5MiB", True, "5M")

    users = kube.api("GET", USERS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert [c["name"] for c in users["columnDefinitions"]][:4] == ["Name", "Email", "Roles", "Deactivated"]
