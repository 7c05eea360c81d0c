"""The Kubernetes control plane of tests/kube_cluster.py: a real kube-apiserver over a real etcd, started once for
this module, serves a CRD and its custom resources, authenticates tokens and client certificates, authorizes by
RBAC, and keeps its data when the API server goes away and comes back."""

import asyncio
import base64
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


def test_a_kubeconfig_works_with_kubernetes_asyncio(kube, widget, tmp_path):
    client = pytest.importorskip("kubernetes_asyncio.client")
    config = pytest.importorskip("kubernetes_asyncio.config")
    path = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), namespace=NAMESPACE)

    async def names():
        api_client = await config.new_client_from_config(config_file=path)
        async with api_client:
            widgets = await client.CustomObjectsApi(api_client).list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL)
        return [item["metadata"]["name"] for item in widgets["items"]]

    assert asyncio.run(names()) == ["first"]


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
