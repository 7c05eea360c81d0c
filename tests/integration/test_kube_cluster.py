"""The Kubernetes control plane of tests/kube_cluster.py: a real kube-apiserver over a real etcd, started once for
this module, serves a CRD and its custom resources, authenticates tokens and client certificates, authorizes by
RBAC, and keeps its data when the API server goes away and comes back; the server's own client
(backup_repository/config/kube_api.py) reads kubeconfigs, exec plugins and a pod's service account as kubectl
does."""

import asyncio
import base64
import sys
import time

import pytest
import requests
import yaml

from tests import kube_cluster

TOOLS = kube_cluster.require_tools(module_level=True)  # without them: one "skipped" line for this module
NAMESPACE = "br-smoke"
GROUP, VERSION, PLURAL = "example.org", "v1", "widgets"
WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object", "required": ["size"],
                    "properties": {"size": {"type": "integer", "minimum": 1}, "color": {"type": "string"}},
                }},
            }},
        }],
    },
}
WIDGET = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": "first"},
          "spec": {"size": 3, "color": "blue"}}


def eventually(check, timeout=15.0):
    """check() until it returns something other than None (an RBAC change reaches the API server's authorizer a
    moment after the write); None after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = kube_cluster.ControlPlane(str(tmp_path_factory.mktemp("kube")), TOOLS)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def widget(kube):
    """A namespace, the widgets.example.org CRD and one Widget in it, made with the admin token."""
    response = kube.api("POST", "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": NAMESPACE}})
    assert response.status_code == 201, response.text
    kube.create_crd(CRD)
    response = kube.api("POST", WIDGETS, json=WIDGET)
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_reads_the_custom_resource_and_the_schema_is_enforced(kube, widget):
    response = kube.api("GET", f"{WIDGETS}/first")
    assert response.status_code == 200
    assert response.json()["spec"] == {"size": 3, "color": "blue"}
    assert response.json()["metadata"]["uid"] == widget["metadata"]["uid"]

    invalid = dict(WIDGET, metadata={"name": "invalid"}, spec={"size": 0})
    response = kube.api("POST", WIDGETS, json=invalid)
    assert response.status_code == 422, response.text
    assert "spec.size" in response.json()["message"]

    response = kube.api("GET", "/version")
    assert response.json()["gitVersion"].startswith("v1."), response.text


def test_limited_identity_gets_403_until_an_rbac_role_binds_it(kube, widget):
    review = kube.api("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=kube.limited_token,
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status_code == 201, review.text
    assert review.json()["status"]["userInfo"]["username"] == kube_cluster.LIMITED_USER

    response = kube.api("GET", WIDGETS, token=kube.limited_token)
    assert response.status_code == 403, response.text

    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    response = kube.api("POST", f"{rbac}/roles", json={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "widget-reader"},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}]})
    assert response.status_code == 201, response.text
    response = kube.api("POST", f"{rbac}/rolebindings", json={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "widget-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": kube_cluster.LIMITED_USER}]})
    assert response.status_code == 201, response.text

    def listed():
        response = kube.api("GET", WIDGETS, token=kube.limited_token)
        return response if response.status_code == 200 else None

    response = eventually(listed)
    assert response is not None, "the RoleBinding never gave the limited identity the list of widgets"
    assert [item["metadata"]["name"] for item in response.json()["items"]] == ["first"]
    # the Role gives reading only
    response = kube.api("DELETE", f"{WIDGETS}/first", token=kube.limited_token)
    assert response.status_code == 403, response.text


def test_a_client_certificate_from_a_kubeconfig_authenticates(kube, widget, tmp_path):
    cert = kube.mint_client_cert("cert-user", groups=["br-testers"])
    path = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), client_cert=cert, user="cert-user")

    # use the file's own contents, as a client would
    with open(path) as f:
        config = yaml.safe_load(f)
    user = config["users"][0]["user"]
    files = {}
    for name, key in (("ca.crt", config["clusters"][0]["cluster"]["certificate-authority-data"]),
                      ("client.crt", user["client-certificate-data"]), ("client.key", user["client-key-data"])):
        files[name] = tmp_path / name
        files[name].write_bytes(base64.b64decode(key))
    server = config["clusters"][0]["cluster"]["server"]
    assert server == kube.url and "token" not in user

    def get(method, url, **kwargs):
        return requests.request(method, server + url, cert=(str(files["client.crt"]), str(files["client.key"])),
                                verify=str(files["ca.crt"]), timeout=30, **kwargs)

    review = get("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                 json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status_code == 201, review.text
    assert review.json()["status"]["userInfo"]["username"] == "cert-user"
    assert "br-testers" in review.json()["status"]["userInfo"]["groups"]

    response = get("GET", WIDGETS)
    assert response.status_code == 403, response.text  # authenticated (not 401), but no RBAC rule for it
    assert 'User "cert-user"' in response.json()["message"]

    # for contrast: neither a certificate nor a known token
    response = kube.api("GET", WIDGETS, token="not-a-known-token")
    assert response.status_code == 401, response.text


def test_a_client_certificate_made_with_the_openssl_command_authenticates(kube, widget, monkeypatch):
    """The openssl path of tests/kube_cluster.py, for machines without the cryptography package."""
    monkeypatch.setenv("BR_TEST_KUBE_PKI", "openssl")
    cert = kube.mint_client_cert("openssl-user", groups=["br-testers", "second-group"])
    review = kube.api("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", cert=cert,
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status_code == 201, review.text
    user = review.json()["status"]["userInfo"]
    assert user["username"] == "openssl-user"
    assert {"br-testers", "second-group"} <= set(user["groups"])


def names_with(connection) -> list:
    """The widgets' names, listed through the server's own client (backup_repository/config/kube_api.py)."""
    from backup_repository.config import kube_api

    async def names():
        answer = await kube_api.Client(connection, timeout=10).json("GET", WIDGETS)
        return [item["metadata"]["name"] for item in answer["items"]]

    return asyncio.run(names())


def test_the_servers_client_reads_a_kubeconfig_with_a_token_or_a_client_certificate(kube, widget, tmp_path):
    from backup_repository.config import kube_api

    assert names_with(kube_api.load(kube.write_kubeconfig(str(tmp_path / "token"), namespace=NAMESPACE))) == ["first"]
    cert = kube.mint_client_cert("widget-reader", groups=["system:masters"])
    inline = kube.write_kubeconfig(str(tmp_path / "inline"), client_cert=cert)
    assert names_with(kube_api.load(inline)) == ["first"]
    # the same with files named relative to the kubeconfig, as kubectl resolves them
    config = yaml.safe_load(open(inline))
    user = config["users"][0]["user"]
    (tmp_path / "pki").mkdir()
    for field, name in (("client-certificate", "reader.crt"), ("client-key", "reader.key")):
        (tmp_path / "pki" / name).write_bytes(base64.b64decode(user.pop(field + "-data")))
        user[field] = f"pki/{name}"
    (tmp_path / "files").write_text(yaml.safe_dump(config))
    assert names_with(kube_api.load(str(tmp_path / "files"))) == ["first"]
    # a refused identity is a 401 the provider names, not a hang
    config["users"][0]["user"] = {"token": "not-a-known-token"}
    (tmp_path / "refused").write_text(yaml.safe_dump(config))
    with pytest.raises(kube_api.ApiError) as refused:
        names_with(kube_api.load(str(tmp_path / "refused")))
    assert refused.value.status == 401


def test_the_servers_client_merges_kubeconfigs_and_follows_the_current_context(kube, widget, tmp_path, monkeypatch):
    from backup_repository.config import kube_api

    good = yaml.safe_load(open(kube.write_kubeconfig(str(tmp_path / "good"), namespace=NAMESPACE)))
    bad = {**good, "current-context": "elsewhere",
           "contexts": [{"name": "elsewhere", "context": {"cluster": "br-test", "user": "nobody"}}],
           "users": [{"name": "nobody", "user": {"token": "not-a-known-token"}}]}
    (tmp_path / "bad").write_text(yaml.safe_dump(bad))
    # the first file to set current-context wins; names defined in either are found
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'good'}:{tmp_path / 'bad'}")
    assert names_with(kube_api.load()) == ["first"]
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'bad'}:{tmp_path / 'good'}")
    with pytest.raises(kube_api.ApiError):
        names_with(kube_api.load())
    bad["current-context"] = "missing"
    (tmp_path / "bad").write_text(yaml.safe_dump(bad))
    with pytest.raises(kube_api.ConfigError, match="has no context 'missing'"):
        kube_api.load(str(tmp_path / "bad"))


EXEC_PLUGIN = """#!{python}
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open({calls!r}, "a") as f:
    f.write(info["apiVersion"] + " " + os.environ.get("PLUGIN_SAYS", "") + "\\n")
status = {status}
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}}))
"""


def exec_kubeconfig(kube, tmp_path, name: str, api_version: str, status: str) -> str:
    script = tmp_path / f"{name}.py"
    script.write_text(EXEC_PLUGIN.format(python=sys.executable, calls=str(tmp_path / f"{name}.calls"), status=status))
    script.chmod(0o755)
    config = yaml.safe_load(open(kube.write_kubeconfig(str(tmp_path / name), namespace=NAMESPACE)))
    config["users"][0]["user"] = {"exec": {"apiVersion": api_version, "command": f"./{name}.py",
                                           "env": [{"name": "PLUGIN_SAYS", "value": "hello"}]}}
    (tmp_path / name).write_text(yaml.safe_dump(config))
    return str(tmp_path / name)


def test_the_servers_client_runs_exec_credential_plugins_again_when_their_credential_expires(kube, widget, tmp_path):
    """An exec plugin (relative to the kubeconfig, with its env and KUBERNETES_EXEC_INFO) gives a token; run again
    once it has expired; a v1beta1 plugin that gives a client certificate works too."""
    from backup_repository.config import kube_api

    expired = '{"token": %r, "expirationTimestamp": "2000-01-01T00:00:00Z"}' % kube.admin_token
    connection = kube_api.load(exec_kubeconfig(kube, tmp_path, "token-plugin", "client.authentication.k8s.io/v1",
                                               expired))
    assert names_with(connection) == ["first"]
    assert names_with(connection) == ["first"]
    assert (tmp_path / "token-plugin.calls").read_text().splitlines() == [
        "client.authentication.k8s.io/v1 hello"] * 2  # expired at once: asked again for the second request

    certificate, key = kube.mint_client_cert("exec-user", groups=["system:masters"])
    status = "{'clientCertificateData': %r, 'clientKeyData': %r}" % (open(certificate).read(), open(key).read())
    connection = kube_api.load(exec_kubeconfig(kube, tmp_path, "cert-plugin", "client.authentication.k8s.io/v1beta1",
                                               status))
    assert names_with(connection) == ["first"] and names_with(connection) == ["first"]
    assert len((tmp_path / "cert-plugin.calls").read_text().splitlines()) == 1  # no expiry: kept


def test_the_servers_client_in_a_pod_reads_the_rotated_service_account_token(kube, widget, tmp_path):
    from backup_repository.config import kube_api

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(open(kube.ca_path, "rb").read())
    (account / "token").write_text("an-old-token-the-kubelet-replaced")
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}
    connection = kube_api.load("", environ=environ, service_account=str(account))
    with pytest.raises(kube_api.ApiError) as refused:
        names_with(connection)  # read at once, refused: read again at once, refused again
    assert refused.value.status == 401
    (account / "token").write_text(kube.admin_token + "\n")  # rotated by the kubelet
    connection.credentials._read_at -= kube_api.TOKEN_FILE_REREAD + 1
    assert names_with(connection) == ["first"]
    with pytest.raises(kube_api.ConfigError, match="automountServiceAccountToken"):
        kube_api.load("", environ=environ, service_account=str(tmp_path / "none"))


def test_the_resource_outlives_an_apiserver_restart(kube, widget):
    port = kube.port
    kube.stop_apiserver()
    with pytest.raises(requests.ConnectionError):
        kube.api("GET", f"{WIDGETS}/first", timeout=5)

    kube.start_apiserver()
    assert kube.port == port
    response = kube.api("GET", f"{WIDGETS}/first")
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["uid"] == widget["metadata"]["uid"]
