"""--provider=kubernetes against a real kube-apiserver (tests/kube_cluster.py), with the least Role of
docs/kubernetes.md: logins and uploads from custom resources, edits applied within 2 s, a bad resource that breaks
only itself, --validate-config against the namespace, a clear exit when the identity may not read."""

import base64
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from backup_repository.security.passwords import encode_password
from tests import kube_cluster
from tests.integration.collections_config import PASSWORD, version_path
from tests.support import (
    GO_ADMIN_HASH, HEALTH_KEY, ROOT, ConfigDir, TcpProxy, assert_error, base_env, pgp_message, wait_until,
)

TOOLS = kube_cluster.require_tools(module_level=True)
NS = "backups"
API = f"/apis/backups.riotkit.org/v1alpha1/namespaces/{NS}"
#: The least Role the server needs (docs/kubernetes.md).
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": "backup-repository", "namespace": NS},
    "rules": kube_cluster.DOCUMENTED_ROLE_RULES,
}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = kube_cluster.ControlPlane(str(tmp_path_factory.mktemp("kube-provider")), TOOLS)
    plane.start()
    try:
        for path in sorted((ROOT / "packaging" / "kubernetes" / "crds").glob("*.yaml")):
            plane.create_crd(yaml.safe_load(path.read_text()))
        without_status = {**ROLE, "metadata": {"name": "without-status", "namespace": NS}, "rules": ROLE["rules"][:2]}
        for path, body in (("/api/v1/namespaces", {"metadata": {"name": NS}}),
                           (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", ROLE),
                           (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", without_status),
                           binding("backup-repository", kube_cluster.LIMITED_USER),
                           binding("without-status", "no-status-rights")):
            response = plane.api("POST", path, json=body)
            assert response.status_code == 201, response.text
        yield plane
    finally:
        plane.stop()


def binding(role: str, user: str) -> tuple:
    return (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings", {
        "metadata": {"name": f"{role}-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})


def apply(kube, kind: str, name: str, body: dict):
    """Create or replace an object (secrets, users, collections) in the namespace."""
    base = f"/api/v1/namespaces/{NS}/secrets" if kind == "Secret" else f"{API}/{kind.lower()}s"
    document = {"apiVersion": "v1" if kind == "Secret" else "backups.riotkit.org/v1alpha1", "kind": kind,
                "metadata": {"name": name}, **body}
    current = kube.api("GET", f"{base}/{name}")
    if current.status_code == 200:
        document["metadata"]["resourceVersion"] = current.json()["metadata"]["resourceVersion"]
        response = kube.api("PUT", f"{base}/{name}", json=document)
    else:
        response = kube.api("POST", base, json=document)
    assert response.status_code in (200, 201), response.text


def delete(kube, kind: str, name: str):
    response = kube.api("DELETE", f"{API}/{kind.lower()}s/{name}")
    assert response.status_code == 200, response.text


def secret(**entries) -> dict:
    return {"data": {key: base64.b64encode(value.encode()).decode() for key, value in entries.items()}}


def user(password_entry: str, roles=("systemAdmin",)) -> dict:
    return {"spec": {"email": "x@example.org", "roles": list(roles),
                     "passwordFromRef": {"name": "passwords", "entry": password_entry}}}


def collection(**spec) -> dict:
    return {"spec": {"description": "docs", "filenameTemplate": "docs-${version}.gpg", "maxBackupsCount": 3,
                     "maxOneVersionSize": "1M", "maxCollectionSize": "5M", **spec}}


@pytest.fixture
def kubeconfig(kube, tmp_path):
    return kube.write_kubeconfig(str(tmp_path / "kubeconfig"), token=kube.limited_token, namespace=NS)


@pytest.fixture
def server(kube, kubeconfig, make_backend, start_server, tmp_path):
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH))
    apply(kube, "BackupUser", "admin", user("admin"))
    apply(kube, "BackupCollection", "docs", collection())
    running = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                           "--provider=kubernetes", f"--kubeconfig={kubeconfig}", f"--namespace={NS}",
                           "--kube-stale-after=2s")
    yield running
    running.stop()  # the watches end with the server: a clean stop, no traceback
    assert running.proc.returncode == 0 and "Traceback" not in running.log(), running.log()[-3000:]


def logs_in(server, login: str, password: str) -> bool:
    return server.request("POST", "/api/stable/auth/login",
                          json={"username": login, "password": password}).status_code == 200


def test_logins_and_uploads_from_custom_resources(server):
    token = server.login("admin", PASSWORD)
    response = server.request("POST", version_path("docs"), token, data=pgp_message(b"from the cluster"))
    assert response.status_code == 200, response.text
    assert server.get(version_path("docs", "/latest"), token).content == pgp_message(b"from the cluster")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_the_provider_costs_little_memory_beyond_files(server, tmp_path, make_backend, start_server):
    """The provider's client is a few hundred lines on asyncio (docs/performance.md#configuration-at-scale): a
    server on the Kubernetes provider holds about what one on files does (a library client cost 45 MiB more)."""
    files = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "files"))
    for running in (server, files):
        assert running.get("/health").status_code == 200
    time.sleep(3)  # past the first passes of the background work
    kubernetes_rss, files_rss = rss_mib(server.proc.pid), rss_mib(files.proc.pid)
    assert kubernetes_rss - files_rss <= 12, (kubernetes_rss, files_rss)


def test_edits_apply_within_two_seconds(kube, server):
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, bob=encode_password("bob-1")))
    apply(kube, "BackupUser", "bob", user("bob"))
    assert wait_until(lambda: logs_in(server, "bob", "bob-1"), timeout=2, interval=0.1)
    token = server.login("bob", "bob-1")

    # a rotated secret applies like any edit; the sessions of the old password end
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, bob=encode_password("bob-2")))
    assert wait_until(lambda: logs_in(server, "bob", "bob-2"), timeout=4, interval=0.1)
    assert not logs_in(server, "bob", "bob-1")
    assert server.get("/api/stable/auth/whoami", token).status_code == 401

    # a new collection, then a deleted user whose token dies
    apply(kube, "BackupCollection", "more", collection(filenameTemplate="more-${version}.gpg"))
    admin = server.login("admin", PASSWORD)
    assert wait_until(lambda: server.get(version_path("more"), admin).status_code == 200, timeout=2, interval=0.1)
    fresh = server.login("bob", "bob-2")
    delete(kube, "BackupUser", "bob")
    assert wait_until(lambda: server.get("/api/stable/auth/whoami", fresh).status_code == 401, timeout=2,
                      interval=0.1)
    assert_error(server.get("/api/stable/auth/whoami", fresh), 401, "user account does not exist or is deactivated")
    delete(kube, "BackupCollection", "more")
    # the least Role allows only get on secrets: they are read again every 1.5 s, and the server says so once
    assert server.log().count("the Role allows get but not list and watch on secrets") == 1


def identity_with_secret_rule(kube, tmp_path, name: str, secret_rule: dict) -> str:
    """A kubeconfig for a new identity bound to the Role's custom-resource rule and ``secret_rule``."""
    role = {**ROLE, "metadata": {"name": name, "namespace": NS}, "rules": [ROLE["rules"][0], secret_rule]}
    for path, body in ((f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", role), binding(name, name)):
        response = kube.api("POST", path, json=body)
        assert response.status_code in (201, 409), response.text
    return kube.write_kubeconfig(str(tmp_path / "kubeconfig"), client_cert=kube.mint_client_cert(name),
                                 namespace=NS)


def test_secrets_are_watched_when_the_role_allows_it(kube, tmp_path, make_backend, start_server):
    """With list and watch on the referenced Secrets (by resourceNames), each is watched by name: a rotation
    applies as fast as any edit, and nothing is read again and again."""
    kubeconfig = identity_with_secret_rule(kube, tmp_path, "watching-secrets", {
        "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["passwords"], "verbs": ["get", "list", "watch"]})
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, gina=encode_password("gina-1")))
    apply(kube, "BackupUser", "admin", user("admin"))
    apply(kube, "BackupUser", "gina", user("gina"))
    server = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                          "--provider=kubernetes", f"--kubeconfig={kubeconfig}", f"--namespace={NS}")
    assert logs_in(server, "gina", "gina-1")
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, gina=encode_password("gina-2")))
    assert wait_until(lambda: logs_in(server, "gina", "gina-2"), timeout=2, interval=0.1)
    assert not logs_in(server, "gina", "gina-1")
    assert "the Role allows get but not list and watch" not in server.log()
    delete(kube, "BackupUser", "gina")


def test_a_bad_resource_breaks_only_itself_and_validate_config_names_it(kube, server, kubeconfig):
    # the schema accepts it, the server refuses it: 3 × 1M do not fit in 2M
    apply(kube, "BackupCollection", "too-small", collection(maxCollectionSize="2M",
                                                            filenameTemplate="small-${version}.gpg"))
    admin = server.login("admin", PASSWORD)
    assert wait_until(lambda: "too-small" in server.log(), timeout=3)
    assert server.get(version_path("too-small"), admin).json()["error"] == "cannot find specified collection"
    assert server.request("POST", version_path("docs"), admin, data=pgp_message(b"still fine")).status_code == 200

    result = subprocess.run([sys.executable, "-m", "backup_repository", "--provider=kubernetes",
                             f"--kubeconfig={kubeconfig}", f"--namespace={NS}", "--validate-config"],
                            capture_output=True, text=True, env=base_env(ROOT), cwd=str(ROOT), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"{NS}/BackupCollection/too-small: spec.maxCollectionSize: 2097152 bytes is smaller than "
            "maxBackupsCount × maxOneVersionSize") in result.stdout
    delete(kube, "BackupCollection", "too-small")


def test_validate_config_warns_naming_the_resource(kube, kubeconfig):
    """Warnings name namespace/Kind/name and leave the exit status at 0; a Secret's data is read decoded."""
    apply(kube, "BackupUser", "guarded", {"spec": {"email": "g@example.org", "password": GO_ADMIN_HASH,
                                                   "restrictByIP": ["1.2.3.4"]}})
    apply(kube, "Secret", "health", secret(plain="the-code"))
    apply(kube, "BackupCollection", "watched", collection(filenameTemplate="watched-${version}.gpg",
                                                          healthSecretRef={"name": "health", "entry": "plain"}))
    try:
        result = subprocess.run([sys.executable, "-m", "backup_repository", "--provider=kubernetes",
                                 f"--kubeconfig={kubeconfig}", f"--namespace={NS}", "--validate-config"],
                                capture_output=True, text=True, env=base_env(ROOT), cwd=str(ROOT), timeout=60)
    finally:
        delete(kube, "BackupUser", "guarded")
        delete(kube, "BackupCollection", "watched")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"warning: {NS}/BackupUser/guarded: spec.restrictByIP: user 'guarded' may log in "
                               "and use its tokens only from 1.2.3.4;") for line in lines), result.stdout
    assert any(line.startswith(f"warning: {NS}/BackupCollection/watched: spec.healthSecretRef: entry 'plain' of "
                               "secret 'health' is not a sha256 hex digest") for line in lines), result.stdout


def test_an_identity_that_may_not_read_stops_the_start_with_the_cause(kube, tmp_path, make_backend):
    cert = kube.mint_client_cert("nobody-in-particular")
    kubeconfig = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), client_cert=cert, namespace=NS)
    result = subprocess.run([sys.executable, "-m", "backup_repository", "--provider=kubernetes",
                             f"--kubeconfig={kubeconfig}", f"--namespace={NS}", "--jwt-secret-key=x",
                             "--listen=127.0.0.1:0", *make_backend("sqlite", "local").args],
                            capture_output=True, text=True, env=base_env(tmp_path), cwd=str(ROOT), timeout=60)
    assert result.returncode == 1
    assert ("cannot start: forbidden (403): the identity may not list backupusers in namespace 'backups'"
            in result.stderr), result.stderr


def configuration_check(server) -> dict:
    checks = server.get(f"/ready?code={HEALTH_KEY}").json()["data"]["health"]
    return next(check for check in checks if check["name"] == "ConfigurationProviderValidator")


def test_the_api_server_going_away_and_coming_back(kube, server):
    """Served from the cache while the API server is away (/ready says so after --kube-stale-after); resynchronised
    by itself when it is back."""
    token = server.login("admin", PASSWORD)
    assert configuration_check(server)["status"] is True
    kube.stop_apiserver()
    try:
        assert logs_in(server, "admin", PASSWORD)
        assert server.get("/api/stable/auth/whoami", token).status_code == 200
        assert server.request("POST", version_path("docs"), token, data=pgp_message(b"offline")).status_code == 200
        assert wait_until(lambda: configuration_check(server)["status"] is False, timeout=10)
        assert configuration_check(server)["message"].startswith(
            "configuration provider is not usable: the API server cannot be reached")
    finally:
        kube.start_apiserver()
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, carol=encode_password("carol")))
    apply(kube, "BackupUser", "carol", user("carol"))
    assert wait_until(lambda: logs_in(server, "carol", "carol"), timeout=25, interval=0.2)
    assert "configuration provider is not usable: the API server cannot be reached" in server.log()
    assert "in sync with the API server again" in server.log()
    assert wait_until(lambda: configuration_check(server)["status"] is True, timeout=5)
    delete(kube, "BackupUser", "carol")


def test_a_silent_network_is_noticed_and_healed(kube, tmp_path, make_backend, start_server):
    """The API server's packets dropped, its connections left open (a partition, not a stopped process): logins
    keep working from the cache, the silent watches are cut after --kube-watch-timeout + 10 s and every request is
    bounded by --kube-request-timeout, so /ready says so; once the network is back, changes apply again."""
    proxy = TcpProxy("127.0.0.1", kube.port).start()
    try:
        kubeconfig = yaml.safe_load(open(kube.write_kubeconfig(str(tmp_path / "kubeconfig"), token=kube.limited_token,
                                                               namespace=NS)))
        kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH))
        apply(kube, "BackupUser", "admin", user("admin"))
        apply(kube, "BackupCollection", "docs", collection())
        server = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                              "--provider=kubernetes", f"--kubeconfig={tmp_path / 'kubeconfig'}", f"--namespace={NS}",
                              "--kube-stale-after=2s", "--kube-watch-timeout=3s", "--kube-request-timeout=2s")
        assert configuration_check(server)["status"] is True
        proxy.pause()
        try:
            assert logs_in(server, "admin", PASSWORD)
            assert wait_until(lambda: configuration_check(server)["status"] is False, timeout=40, interval=0.5)
            message = configuration_check(server)["message"]
            assert message.startswith("configuration provider is not usable: the API server did not answer"), message
            assert wait_until(lambda: "the watch heard nothing for 13s" in server.log(), timeout=30)
        finally:
            proxy.resume()
        apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, dave=encode_password("dave")))
        apply(kube, "BackupUser", "dave", user("dave"))
        assert wait_until(lambda: logs_in(server, "dave", "dave"), timeout=30, interval=0.2)
        assert wait_until(lambda: configuration_check(server)["status"] is True, timeout=10)
        assert "in sync with the API server again" in server.log()
        server.stop()
        assert server.proc.returncode == 0 and "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        proxy.stop()
        kube.api("DELETE", f"{API}/backupusers/dave")


def test_many_secrets_are_watched_with_one_watch_of_the_namespace(kube, tmp_path, make_backend, start_server):
    """More than 8 referenced Secrets and a Role that allows list and watch on the namespace's secrets: one watch
    follows them all (a watch per Secret holds a connection each). A rotation applies within 2 s."""
    kubeconfig = identity_with_secret_rule(kube, tmp_path, "all-secrets", {
        "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]})
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH))
    apply(kube, "BackupUser", "admin", user("admin"))
    apply(kube, "Secret", "unrelated", secret(other="not referenced"))
    hashes = {index: encode_password(f"pw-{index}") for index in range(10)}
    for index in range(10):
        apply(kube, "Secret", f"tenant-{index}", secret(password=hashes[index]))
        apply(kube, "BackupUser", f"tenant-{index}", {"spec": {
            "email": "t@example.org", "roles": [], "passwordFromRef": {"name": f"tenant-{index}", "entry": "password"}}})
    server = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                          "--provider=kubernetes", f"--kubeconfig={kubeconfig}", f"--namespace={NS}")
    assert logs_in(server, "tenant-3", "pw-3")
    apply(kube, "Secret", "tenant-3", secret(password=encode_password("pw-3b")))
    assert wait_until(lambda: logs_in(server, "tenant-3", "pw-3b"), timeout=2, interval=0.1)
    assert not logs_in(server, "tenant-3", "pw-3")
    assert "11 Secrets are referenced: one watch of the namespace's Secrets follows them" in server.log()
    assert "followed on its own" not in server.log() and "Traceback" not in server.log()
    for index in range(10):
        delete(kube, "BackupUser", f"tenant-{index}")


def test_rbac_taken_away_and_given_back(kube, server):
    """The Role's binding removed while serving: the 403 is named in /ready (the cache keeps serving); the binding
    back: in sync again by itself."""
    name = f"backup-repository-{kube_cluster.LIMITED_USER}"
    path, body = binding("backup-repository", kube_cluster.LIMITED_USER)
    token = server.login("admin", PASSWORD)
    assert kube.api("DELETE", f"{path}/{name}").status_code == 200
    try:
        assert wait_until(lambda: configuration_check(server)["status"] is False, timeout=10), server.log()[-3000:]
        assert configuration_check(server)["message"] == (
            "configuration provider is not usable: forbidden (403): the identity may not get secret passwords in "
            "namespace 'backups'; see the Role in docs/kubernetes.md")
        assert logs_in(server, "admin", PASSWORD)  # served from the cache
        assert server.request("POST", version_path("docs"), token, data=pgp_message(b"no rights")).ok
    finally:
        assert kube.api("POST", path, json=body).status_code == 201
    assert wait_until(lambda: configuration_check(server)["status"] is True, timeout=10)
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, erin=encode_password("erin")))
    apply(kube, "BackupUser", "erin", user("erin"))
    assert wait_until(lambda: logs_in(server, "erin", "erin"), timeout=2, interval=0.1)
    said = [line for line in server.log().splitlines() if "config.kubernetes: configuration provider is not usable" in line]
    assert len(said) == 1 and "forbidden (403)" in said[0], said  # once, not once per retry
    delete(kube, "BackupUser", "erin")


def etcd_compact(kube):
    """Compact etcd's history up to its current revision: every older resourceVersion is gone (410 to a watch)."""
    import requests

    revision = requests.post(f"{kube.etcd_url}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()},
                             timeout=10).json()["header"]["revision"]
    response = requests.post(f"{kube.etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True},
                             timeout=30)
    assert response.status_code == 200, response.text


def test_an_expired_watch_lists_again_and_loses_nothing(kube, server):
    """The server's watches are cut and it is held still while users change and the history it knew is compacted
    away; when it goes on, its watch from the old resourceVersion gets 410 Gone, and it lists again: every change is
    there."""
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, dave=encode_password("dave")))
    apply(kube, "BackupUser", "dave", user("dave"))
    assert wait_until(lambda: logs_in(server, "dave", "dave"), timeout=2, interval=0.1)
    dave = server.login("dave", "dave")
    kube.stop_apiserver()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        kube.start_apiserver()
        apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH, frank=encode_password("frank")))
        apply(kube, "BackupUser", "frank", user("frank"))
        delete(kube, "BackupUser", "dave")
        etcd_compact(kube)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: logs_in(server, "frank", "frank"), timeout=25, interval=0.2)
    assert "the watch of backupusers expired; listing again" in server.log()
    assert server.get("/api/stable/auth/whoami", dave).status_code == 401
    assert not logs_in(server, "dave", "dave")
    delete(kube, "BackupUser", "frank")


def test_collections_show_their_status_to_kubectl(kube, server):
    token = server.login("admin", PASSWORD)
    for index in range(2):
        assert server.request("POST", version_path("docs"), token, data=pgp_message(b"v%d" % index)).ok

    size = len(pgp_message(b"v0")) + len(pgp_message(b"v1"))

    def status():
        current = kube.api("GET", f"{API}/backupcollections/docs").json().get("status") or {}
        return current if (current.get("versionsCount"), current.get("usedBytes")) == (2, size) else None

    written = wait_until(status, timeout=25)  # written by this server from its database (a pass every 10 s)
    assert written, kube.api("GET", f"{API}/backupcollections/docs").json()
    assert (written["used"], written["healthy"], written["message"]) == (f"{size}B", True, "")
    assert written["latestVersionAt"].endswith("Z")
    table = kube.api("GET", f"{API}/backupcollections/docs",
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    cells = dict(zip([c["name"] for c in table["columnDefinitions"]], table["rows"][0]["cells"]))
    assert (cells["Versions"], cells["Used"], cells["Healthy"]) == (2, f"{size}B", True)


def test_without_the_right_to_write_status_everything_else_works(kube, tmp_path, make_backend, start_server):
    cert = kube.mint_client_cert("no-status-rights")
    kubeconfig = kube.write_kubeconfig(str(tmp_path / "kubeconfig"), client_cert=cert, namespace=NS)
    apply(kube, "Secret", "passwords", secret(admin=GO_ADMIN_HASH))
    apply(kube, "BackupUser", "admin", user("admin"))
    apply(kube, "BackupCollection", "docs", collection())
    server = start_server(make_backend("sqlite", "local"), ConfigDir(tmp_path / "unused", copy_examples=False),
                          "--provider=kubernetes", f"--kubeconfig={kubeconfig}", f"--namespace={NS}")
    token = server.login("admin", PASSWORD)
    assert server.request("POST", version_path("docs"), token, data=pgp_message(b"no status")).ok
    assert wait_until(lambda: "status of BackupCollections is off" in server.log(), timeout=15)
    assert server.log().count("status of BackupCollections is off") == 1
