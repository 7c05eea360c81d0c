"""The Helm chart (packaging/helm/backup-repository-server, docs/kubernetes.md#install-with-helm) checked by a real
helm and a real kube-apiserver (tests/kube_cluster.py): lint, render, the policies a reviewer would check, the
refusals, server-side validation of every rendered object in a namespace that enforces the restricted Pod
Security profile, and the server started with the rendered Deployment's arguments and environment under the
chart's own ServiceAccount and Role."""

import base64
import os
import subprocess

import pytest
import requests
import yaml

from tests import kube_cluster
from tests.support import ROOT, Server, base_env, free_port, wait_until

TOOLS = kube_cluster.require_tools(module_level=True)
CHART = ROOT / "packaging" / "helm" / "backup-repository-server"
EXAMPLES = sorted((ROOT / "packaging" / "helm" / "examples").glob("*.values.yaml"))
CASES = [None, *EXAMPLES]
IDS = ["defaults", *(path.name.removesuffix(".values.yaml") for path in EXAMPLES)]
NS = "backups"

@pytest.fixture(scope="module")
def helm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("helm-home")
    return {**base_env(home), "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def helm(env, *args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([TOOLS.helm, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def render(env, values=None, *sets, crds=False) -> list:
    args = ["template", "backups", str(CHART), "--namespace", NS]
    args += ["--values", str(values)] if values else []
    args += [item for value in sets for item in ("--set", value)]
    args += ["--include-crds"] if crds else []
    return [doc for doc in yaml.safe_load_all(helm(env, *args).stdout) if doc]


def of_kind(documents, kind) -> list:
    return [doc for doc in documents if doc["kind"] == kind]


def pod_specs(documents) -> list:
    specs = [doc["spec"]["template"]["spec"] for doc in of_kind(documents, "Deployment")]
    return specs + [doc["spec"] for doc in of_kind(documents, "Pod")]


# --- helm itself -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_lint_strict_passes(helm_home, values):
    result = helm(helm_home, "lint", "--strict", str(CHART), *(["--values", str(values)] if values else []))
    assert "0 chart(s) failed" in result.stdout


def test_the_crds_are_the_providers_own_files(helm_home):
    assert (CHART / "crds").is_symlink()
    assert (CHART / "crds").resolve() == (ROOT / "packaging" / "kubernetes" / "crds").resolve()
    rendered = {doc["metadata"]["name"]: doc for doc in of_kind(render(helm_home, crds=True),
                                                                  "CustomResourceDefinition")}
    for path in sorted((ROOT / "packaging" / "kubernetes" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert rendered[crd["metadata"]["name"]] == crd


# --- what a reviewer checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_policies_a_reviewer_would_check(helm_home, values):
    documents = render(helm_home, values)
    openshift = values is not None and "openshift" in values.name
    assert len(of_kind(documents, "Deployment")) == 1
    for spec in pod_specs(documents):
        pod_context = spec.get("securityContext") or {}
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}
        assert pod_context.get("runAsNonRoot") is True
        if openshift:  # the SCC assigns them
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod_context)
        else:
            assert pod_context.get("runAsUser") == 65532 and pod_context.get("runAsUser") != 0
        for container in spec["containers"]:
            context = container.get("securityContext") or {}
            assert context.get("allowPrivilegeEscalation") is False, container["name"]
            assert context.get("readOnlyRootFilesystem") is True, container["name"]
            assert context.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
            assert context.get("runAsUser", 65532) != 0
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), container["name"]
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image

    deployment = of_kind(documents, "Deployment")[0]
    text = yaml.safe_dump(deployment)
    for secret in of_kind(documents, "Secret"):
        for value in (secret.get("data") or {}).values():
            assert base64.b64decode(value).decode() not in text
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env", []):
            assert not any(word in variable["name"] for word in ("PASSWORD", "SECRET", "KEY")) \
                or "valueFrom" in variable, variable

    roles = of_kind(documents, "Role")
    assert len(roles) == 1 and roles[0]["rules"] == kube_cluster.DOCUMENTED_ROLE_RULES
    assert not of_kind(documents, "ClusterRole") and not of_kind(documents, "ClusterRoleBinding")

    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown = next(a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
                    if a.startswith("--shutdown-grace="))
    assert grace > int(shutdown.split("=")[1].rstrip("s"))


def test_the_embedded_default_is_one_replica_on_a_volume(helm_home):
    documents = render(helm_home)
    deployment = of_kind(documents, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert of_kind(documents, "PersistentVolumeClaim")
    assert not of_kind(documents, "HorizontalPodAutoscaler") and not of_kind(documents, "PodDisruptionBudget")
    env = {v["name"]: v.get("value") for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BR_DB_PATH"] == "/data/metadata.sqlite3" and env["BR_STORAGE_DRIVER_URL"] == "file:///data/storage"
    secret = of_kind(documents, "Secret")[0]
    assert {"BR_JWT_SECRET_KEY", "BR_HEALTH_CHECK_KEY"} <= set(secret["data"])
    assert len(base64.b64decode(secret["data"]["BR_JWT_SECRET_KEY"])) == 64  # generated, never a default


def test_postgresql_and_s3_scale_out(helm_home):
    documents = render(helm_home, ROOT / "packaging" / "helm" / "examples" / "postgresql-s3.values.yaml")
    deployment = of_kind(documents, "Deployment")[0]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not of_kind(documents, "PersistentVolumeClaim")
    assert of_kind(documents, "HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] == 3
    assert of_kind(documents, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 2


@pytest.mark.parametrize("sets, message", [
    (["replicaCount=3"], "replicaCount > 1 and autoscaling need PostgreSQL (database.user) and an object store"),
    (["autoscaling.enabled=true"], "replicaCount > 1 and autoscaling need PostgreSQL"),
    (["replicaCount=2", "database.user=u"], "replicaCount > 1 and autoscaling need PostgreSQL"),
    (["secrets.spec.BR_JWT_SECRET_KEY=changeme-important!"], "is the Go chart's example value"),
    (["settings.healthCode=changeme"], "settings.healthCode is the Go chart's example value"),
    (["terminationGracePeriodSeconds=20"], "must be above settings.shutdownGrace (30s)"),
    (["replicaCount=three"], "replicaCount"),
    (["serviec.port=80"], "serviec"),
    (["secrets.type=vault"], "/secrets/type"),
])
def test_wrong_values_are_refused_with_a_message(helm_home, sets, message):
    args = ["template", "backups", str(CHART), "--namespace", NS]
    result = helm(helm_home, *args, *(item for value in sets for item in ("--set", value)), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


#: A values file written for the Go server's chart (its value names and layout), with the image and the two example
#: secrets changed as its users had to.
GO_CHART_VALUES = {
    "replicaCount": 2, "terminationGracePeriodSeconds": 300,
    "settings": {"healthCode": "our-health-code"},
    "secretsType": "plain",
    "secrets": {"name": "backup-repository-secret-env", "type": "plain", "create": True, "spec": {
        "BR_JWT_SECRET_KEY": "a-long-random-key-of-our-own-a-long-random-key-of-our-own",
        "BR_DB_HOSTNAME": "postgresql.db.svc.cluster.local", "BR_DB_PASSWORD": "postgres",
        "BR_DB_USERNAME": "postgres", "BR_DB_NAME": "backup-repository", "BR_DB_PORT": "5433"}},
    "env": {"BR_LOG_LEVEL": "info", "BR_STORAGE_DRIVER_URL": "s3://backups?endpoint=minio:9000&region=eu-central-1"},
    "image": {"repository": "registry.example.org/backup-repository", "pullPolicy": "Always", "tag": ""},
    "imagePullSecrets": [], "nameOverride": "", "fullnameOverride": "",
    "serviceAccount": {"create": True, "annotations": {}, "name": ""},
    "podAnnotations": {}, "podSecurityContext": {},
    "securityContext": {"capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True, "runAsNonRoot": True},
    "service": {"type": "ClusterIP", "port": 8080},
    "ingress": {"enabled": False, "className": "", "annotations": {}, "hosts": [
        {"host": "backups.example.org", "paths": [{"path": "/", "pathType": "ImplementationSpecific"}]}], "tls": []},
    "route": {"enabled": False, "host": "backups.example.org", "yaml": {}},
    "resources": {"limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": "50m", "memory": "128Mi"}},
    "autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 100, "targetCPUUtilizationPercentage": 80},
    "health": {"liveness": {"enabled": True, "attributes": {"failureThreshold": 1}},
               "readiness": {"enabled": True, "attributes": {}}},
    "nodeSelector": {}, "tolerations": [], "affinity": {}, "deploymentLabels": {}, "podLabels": {},
}


def test_a_values_file_of_the_go_servers_chart_works(helm_home, tmp_path):
    values = tmp_path / "go.values.yaml"
    values.write_text(yaml.safe_dump(GO_CHART_VALUES))
    helm(helm_home, "lint", "--strict", str(CHART), "--values", str(values))
    documents = render(helm_home, values)
    secret = of_kind(documents, "Secret")[0]
    assert secret["metadata"]["name"] == "backup-repository-secret-env"
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded["BR_HEALTH_CHECK_KEY"] == "our-health-code" and decoded["BR_DB_PORT"] == "5433"
    deployment = of_kind(documents, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2 and pod["terminationGracePeriodSeconds"] == 300
    env = {v["name"]: v.get("value") for v in pod["containers"][0]["env"]}
    assert not {"BR_DB_PORT", "BR_DB_PATH", "BR_DB_HOSTNAME"} & set(env)  # the Secret's BR_DB_* are not overridden
    assert env["BR_STORAGE_DRIVER_URL"].startswith("s3://")
    assert pod["containers"][0]["livenessProbe"]["failureThreshold"] == 1
    assert "our-health-code" not in yaml.safe_dump(deployment)


# --- the real API server ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = kube_cluster.ControlPlane(str(tmp_path_factory.mktemp("kube-helm")), TOOLS)
    plane.start()
    try:
        for path in sorted((ROOT / "packaging" / "kubernetes" / "crds").glob("*.yaml")):
            plane.create_crd(yaml.safe_load(path.read_text()))
        for crd in STAND_IN_CRDS:
            plane.create_crd(crd)
        labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
        response = plane.api("POST", "/api/v1/namespaces", json={"metadata": {"name": NS, "labels": labels}})
        assert response.status_code == 201, response.text
        yield plane
    finally:
        plane.stop()


def _stand_in(group: str, kind: str, plural: str) -> dict:
    """Kinds that are not part of Kubernetes (OpenShift's Route, Bitnami's SealedSecret): a CRD that accepts any
    spec, so that their objects are at least checked for names and metadata."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": "v1" if group.startswith("route") else "v1alpha1", "served": True,
                                   "storage": True, "schema": {"openAPIV3Schema": {
                                       "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


STAND_IN_CRDS = [_stand_in("route.openshift.io", "Route", "routes"),
                 _stand_in("bitnami.com", "SealedSecret", "sealedsecrets")]

PATHS = {
    "v1": "/api/v1", "apps/v1": "/apis/apps/v1", "rbac.authorization.k8s.io/v1": "/apis/rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1": "/apis/networking.k8s.io/v1", "policy/v1": "/apis/policy/v1",
    "autoscaling/v2": "/apis/autoscaling/v2", "route.openshift.io/v1": "/apis/route.openshift.io/v1",
    "bitnami.com/v1alpha1": "/apis/bitnami.com/v1alpha1",
}


def collection_path(doc: dict) -> str:
    plural = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets",
              "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Ingress": "ingresses"}.get(
        doc["kind"], doc["kind"].lower() + "s")
    return f"{PATHS[doc['apiVersion']]}/namespaces/{NS}/{plural}"


def server_side_apply(kube, doc: dict, dry_run: bool = True):
    """Server-side apply with fieldValidation=Strict: an unknown field or a wrong type is refused."""
    params = {"fieldManager": "helm-chart-test", "fieldValidation": "Strict", "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    return kube.api("PATCH", f"{collection_path(doc)}/{doc['metadata']['name']}", json=doc, params=params,
                    headers={"Content-Type": "application/apply-patch+yaml"})


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_rendered_object_is_valid_for_the_api_server(kube, helm_home, values):
    documents = render(helm_home, values)
    assert documents
    for doc in documents:
        response = server_side_apply(kube, doc)
        assert response.status_code in (200, 201), f"{doc['kind']} {doc['metadata']['name']}: {response.text}"
        assert "Warning" not in response.headers, (doc["kind"], response.headers.get("Warning"))


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_the_restricted_profile_admits_the_pods(kube, helm_home, values):
    """The namespace enforces Pod Security 'restricted': the Deployment's pod (and helm test's) is created."""
    for spec in pod_specs(render(helm_home, values)):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "admission-check"}, "spec": spec}
        response = kube.api("POST", f"/api/v1/namespaces/{NS}/pods", json=pod, params={"dryRun": "All"})
        assert response.status_code == 201, response.text


def test_a_pod_that_breaks_the_restricted_profile_is_refused(kube, helm_home):
    """The check above can fail: the same pod with privilege escalation allowed is refused."""
    spec = pod_specs(render(helm_home))[0]
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "admission-check"}, "spec": spec}
    response = kube.api("POST", f"/api/v1/namespaces/{NS}/pods", json=pod, params={"dryRun": "All"})
    assert response.status_code == 403 and "restricted" in response.text, response.text


def test_the_server_runs_with_the_rendered_arguments_and_the_charts_role(kube, helm_home, tmp_path):
    """Install the chart's ServiceAccount, Role and RoleBinding for real, take a token of that ServiceAccount, and
    start the server with the rendered Deployment's arguments and environment (paths moved into a temporary
    directory, the Secret's entries as envFrom gives them): it reads the namespace and answers the probes."""
    documents = render(helm_home)
    for doc in documents:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            response = server_side_apply(kube, doc, dry_run=False)
            assert response.status_code in (200, 201), response.text
    account = of_kind(documents, "ServiceAccount")[0]["metadata"]["name"]
    answer = kube.api("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token",
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 3600}})
    assert answer.status_code == 201, answer.text
    kubeconfig = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), token=answer.json()["status"]["token"],
                                       namespace=NS)

    container = of_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    probe_port = free_port()
    args = [a for a in container["args"] if not a.startswith(("--listen=", "--probe-listen="))]
    args += ["--listen=127.0.0.1:0", f"--probe-listen=127.0.0.1:{probe_port}"]
    def moved(value: str) -> str:  # the pod's /data and /tmp volumes, here
        for mount in ("/data", "/tmp"):
            for prefix in (mount, "file://" + mount):
                if value == prefix or value.startswith(prefix + "/"):
                    return value.replace(mount, str(tmp_path / mount.strip("/")), 1)
        return value

    env = {**base_env(tmp_path), **{v["name"]: moved(v["value"]) for v in container["env"]}}
    secret = of_kind(documents, "Secret")[0]
    env.update({key: base64.b64decode(value).decode() for key, value in secret["data"].items()})
    env["BR_KUBECONFIG"] = kubeconfig
    os.makedirs(tmp_path / "data" / "storage")
    os.makedirs(tmp_path / "tmp")

    server = Server(args, env, tmp_path / "server.log").start(timeout=60)
    try:
        ready = requests.get(f"http://127.0.0.1:{probe_port}/ready", timeout=10)
        assert ready.status_code == 200, (ready.text, server.log()[-3000:])
        assert server.get(f"/ready?code={env['BR_HEALTH_CHECK_KEY']}").status_code == 200
        assert wait_until(lambda: "status of BackupCollections is off" not in server.log(), timeout=1)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_install_and_upgrade_keep_the_generated_keys(kube, helm_home, tmp_path):
    """helm install, then helm upgrade, against the API server: the JWT and health keys generated at the install
    are read back (lookup) and kept by the upgrade; the Secret survives an uninstall (resource-policy keep)."""
    namespace = "helm-install"
    assert kube.api("POST", "/api/v1/namespaces", json={"metadata": {"name": namespace}}).status_code == 201
    kubeconfig = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), namespace=namespace)
    common = ["--namespace", namespace, "--kubeconfig", kubeconfig]

    def keys():
        secret = kube.api("GET", f"/api/v1/namespaces/{namespace}/secrets/backups-backup-repository-server-credentials")
        assert secret.status_code == 200, secret.text
        return {k: secret.json()["data"][k] for k in ("BR_JWT_SECRET_KEY", "BR_HEALTH_CHECK_KEY")}

    helm(helm_home, "install", "backups", str(CHART), *common)
    first = keys()
    helm(helm_home, "upgrade", "backups", str(CHART), *common, "--set", "settings.logLevel=debug")
    assert keys() == first
    deployment = kube.api("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/backups-backup-repository-server")
    assert "--log-level=debug" in deployment.json()["spec"]["template"]["spec"]["containers"][0]["args"]
    helm(helm_home, "uninstall", "backups", *common)
    assert keys() == first
