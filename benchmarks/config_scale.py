"""Configuration at scale: N users and N collections, from files or from a real Kubernetes API server.

    make bench-config                  # or: python benchmarks/config_scale.py [--tenants 100,1000,10000]
                                       #        [--providers filesystem,kubernetes] [--idle-seconds 30]

For each provider and each N, a fresh server (SQLite, local storage, in a temporary directory) is started over a
configuration of N tenants — tenant ``tI`` is a BackupUser whose password is an entry of a Secret shared by 100
users (as the Go server's docs do it) and who manages the BackupCollection ``tI-db`` through its
``accessControl`` — plus one ``systemAdmin``. Then it measures:

- start-up: from starting the process to ``/health`` answering 200; the server's RSS (VmRSS) then and after the
  idle period;
- idle CPU: the server's user+system CPU time over ``--idle-seconds`` of doing nothing, as a share of one core,
  once the first passes of its background tasks are done (with Kubernetes: every collection's status written);
- an edit: a new collection granted to ``t0`` is written (a file, or a POST to the API server); the time until the
  server lists it, polled every 20 ms. Files are checked every ``--config-reload-interval`` (5 s by default), so
  the time to expect there is up to that interval plus the parse;
- latency (median of repeated requests, from a keep-alive connection): ``t0`` logging in (mostly argon2's 64 MiB
  hash), uploading a 4 KiB version to ``t0-db``, and listing its collections.

The Kubernetes provider runs against kube-apiserver and etcd from the test tools' cache
(scripts/build-test-tools.sh); the objects are created through the API before the server starts.
Figures: docs/performance.md#configuration-at-scale.
"""

import argparse
import base64
import concurrent.futures
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import GO_ADMIN_HASH, pgp_message  # noqa: E402  (the bench uses the tests' helpers)

PASSWORD = "admin"  # the password of GO_ADMIN_HASH
NAMESPACE = "backup-repository"
USERS_PER_SECRET = 100
JWT = "benchmark-secret-key-benchmark-secret-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the configuration -----------------------------------------------------------------------------------------
def documents(tenants: int, encode_secret) -> dict:
    """{kind: {name: document}} for N tenants and one admin; ``encode_secret`` turns a Secret value into what its
    ``data`` holds (verbatim for files, base64 for the API)."""
    users, collections, secrets = {}, {}, {}
    users["admin"] = user_doc("admin", {"password": GO_ADMIN_HASH, "roles": ["systemAdmin"]})
    for index in range(tenants):
        name, secret = f"t{index}", f"passwords-{index // USERS_PER_SECRET}"
        secrets.setdefault(secret, {})[name] = encode_secret(GO_ADMIN_HASH)
        users[name] = user_doc(name, {"passwordFromRef": {"name": secret, "entry": name}, "roles": []})
        collections[f"{name}-db"] = collection_doc(f"{name}-db", name)
    return {
        "Secret": {name: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}
                   for name, data in secrets.items()},
        "BackupUser": users,
        "BackupCollection": collections,
    }


def user_doc(name: str, spec: dict) -> dict:
    return {"apiVersion": "backups.riotkit.org/v1alpha1", "kind": "BackupUser", "metadata": {"name": name},
            "spec": {"email": f"{name}@example.org", **spec}}


def collection_doc(name: str, owner: str) -> dict:
    return {"apiVersion": "backups.riotkit.org/v1alpha1", "kind": "BackupCollection", "metadata": {"name": name},
            "spec": {"description": f"database of {owner}", "filenameTemplate": name + "-${version}.sql.gpg",
                     "maxBackupsCount": 5, "maxOneVersionSize": "100M", "maxCollectionSize": "500M",
                     "strategyName": "fifo",
                     "windows": [{"from": "0 1 * * *", "duration": "2h"}],
                     "accessControl": [{"name": owner, "type": "user",
                                        "roles": ["collectionManager", "uploadsAnytime"]}]}}


DIRS = {"Secret": "v1/secrets", "BackupUser": "backups.riotkit.org/v1alpha1/backupusers",
        "BackupCollection": "backups.riotkit.org/v1alpha1/backupcollections"}


class FilesystemSource:
    name = "filesystem"

    def __init__(self, work: Path):
        self.root = work / "config"

    def write(self, kind: str, body: dict):
        directory = self.root / NAMESPACE / DIRS[kind]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{body['metadata']['name']}.yaml"
        path.with_suffix(".tmp").write_text(yaml.safe_dump(body, sort_keys=False))
        os.replace(path.with_suffix(".tmp"), path)

    def populate(self, tenants: int):
        for kind, bodies in documents(tenants, lambda value: value).items():
            for body in bodies.values():
                self.write(kind, body)

    def args(self) -> list:
        return [f"--config-local-path={self.root}"]

    def close(self):
        pass


class KubernetesSource:
    name = "kubernetes"

    def __init__(self, work: Path):
        from tests import kube_cluster

        self.plane = kube_cluster.ControlPlane(str(work / "kube"), kube_cluster.require_tools()).start()
        for path in sorted((ROOT / "packaging" / "kubernetes" / "crds").glob("*.yaml")):
            self.plane.create_crd(yaml.safe_load(path.read_text()))
        self.plane.api("POST", "/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
        self.kubeconfig = self.plane.write_kubeconfig(str(work / "kubeconfig"), token=self.plane.admin_token,
                                                      namespace=NAMESPACE)

    def _path(self, kind: str) -> str:
        if kind == "Secret":
            return f"/api/v1/namespaces/{NAMESPACE}/secrets"
        return f"/apis/backups.riotkit.org/v1alpha1/namespaces/{NAMESPACE}/{kind.lower()}s"

    def write(self, kind: str, body: dict):
        response = self.plane.api("POST", self._path(kind), json=body)
        if response.status_code != 201:
            raise SystemExit(f"cannot create {kind} {body['metadata']['name']}: {response.text}")

    def populate(self, tenants: int):
        docs = documents(tenants, lambda value: base64.b64encode(value.encode()).decode())
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for kind in ("Secret", "BackupUser", "BackupCollection"):
                list(pool.map(lambda body, kind=kind: self.write(kind, body), docs[kind].values()))

    def args(self) -> list:
        return ["--provider=kubernetes", f"--kubeconfig={self.kubeconfig}"]

    def close(self):
        self.plane.stop()


# --- measuring ------------------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def settle_down(pid: int, limit: float = 600) -> float:
    """Wait until the first passes of the background tasks are done (the first writes of every collection's
    status, with Kubernetes): the server's CPU use over 2 s below 2 % of a core. Returns the seconds waited."""
    began = time.monotonic()
    time.sleep(3)
    while time.monotonic() - began < limit:
        before = cpu_seconds(pid)
        time.sleep(2)
        if (cpu_seconds(pid) - before) / 2 < 0.02:
            break
    return time.monotonic() - began


def median_ms(action, times: int) -> float:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def run(source, tenants: int, server_cmd: list, work: Path, idle_seconds: float) -> dict:
    began = time.monotonic()
    source.populate(tenants)
    populated = time.monotonic() - began
    (work / "storage").mkdir()
    log = open(work / "server.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [*server_cmd, "--listen=127.0.0.1:0", f"--jwt-secret-key={JWT}", f"--namespace={NAMESPACE}",
         f"--db-path={work / 'metadata.sqlite3'}", f"--storage-url=file://{work / 'storage'}",
         "--log-level=warning", "--rate-default-limit=100000", "--rate-auth-limit=100000", *source.args()],
        stdout=subprocess.PIPE, stderr=log, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = None
        while url is None:
            line = proc.stdout.readline().decode()
            if not line and proc.poll() is not None:
                raise SystemExit(f"the server did not start; see {work / 'server.log'}")
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        http = requests.Session()
        while http.get(f"{url}/health", timeout=30).status_code != 200:
            time.sleep(0.02)
        startup = time.monotonic() - started
        rss_start = rss_mib(proc.pid)

        settle = settle_down(proc.pid)
        cpu_before, idle_began = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(idle_seconds)
        idle_cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - idle_began) * 100
        rss_idle = rss_mib(proc.pid)

        def login(name="t0"):
            answer = http.post(f"{url}/api/stable/auth/login", json={"username": name, "password": PASSWORD})
            answer.raise_for_status()
            return answer.json()["data"]["token"]

        token = login()
        headers = {"Authorization": f"Bearer {token}"}

        def listing():
            answer = http.get(f"{url}/api/stable/repository/collection", headers=headers)
            answer.raise_for_status()
            return [item["id"] for item in answer.json()["data"]["collections"]]

        body = pgp_message(os.urandom(4096))

        def upload():
            answer = http.post(f"{url}/api/stable/repository/collection/t0-db/version", headers=headers, data=body)
            if answer.status_code != 200:
                raise SystemExit(f"upload failed: {answer.status_code} {answer.text}")

        if listing() != ["t0-db"]:
            raise SystemExit(f"t0 should see t0-db only, sees {listing()}")
        latency = {"login": median_ms(login, 5), "upload": median_ms(upload, 20), "list": median_ms(listing, 50)}

        source.write("BackupCollection", collection_doc("added", "t0"))
        written = time.monotonic()
        while "added" not in listing():
            if time.monotonic() - written > 60:
                raise SystemExit("the edit did not apply within 60 s")
            time.sleep(0.02)
        edit = time.monotonic() - written
        return {"populated": populated, "settle": settle, "startup": startup, "rss_start": rss_start, "rss_idle": rss_idle,
                "idle_cpu": idle_cpu, "edit": edit, **latency}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", default="100,1000,10000", help="comma-separated values of N")
    parser.add_argument("--providers", default="filesystem,kubernetes")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--server", default=None, help="the server command (default: python -m backup_repository)")
    options = parser.parse_args(argv)
    server_cmd = options.server.split() if options.server else [sys.executable, "-m", "backup_repository"]
    sources = {"filesystem": FilesystemSource, "kubernetes": KubernetesSource}

    print(f"{'provider':<11} {'N':>6} {'start':>7} {'RSS start/idle':>15} {'idle CPU':>9} {'edit':>7} "
          f"{'login':>8} {'upload':>8} {'list':>7}")
    for provider in options.providers.split(","):
        for tenants in (int(value) for value in options.tenants.split(",")):
            work = Path(tempfile.mkdtemp(prefix="br-config-bench-"))
            source = sources[provider](work)
            try:
                r = run(source, tenants, server_cmd, work, options.idle_seconds)
            finally:
                source.close()
            shutil.rmtree(work, ignore_errors=True)
            print(f"{provider:<11} {tenants:>6} {r['startup']:>6.2f}s {r['rss_start']:>6.1f}/{r['rss_idle']:>5.1f} MiB"
                  f" {r['idle_cpu']:>8.2f}% {r['edit']:>6.2f}s {r['login']:>6.1f}ms {r['upload']:>6.1f}ms"
                  f" {r['list']:>5.1f}ms   (objects created in {r['populated']:.0f}s, settled in {r['settle']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
