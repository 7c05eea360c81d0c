"""The soak (``make soak``; not part of ``make test``): two server instances on one PostgreSQL database and one
MinIO bucket, clients uploading and downloading for a while, faults injected every 20 to 40 seconds — then the
end state is checked (docs/scaling.md#the-soak).

Faults, in turn: kill -9 of an instance (restarted a second later), PostgreSQL frozen for 5 s (every byte between
the instances and the database held), kill -9 again, MinIO frozen for 5 s (SIGSTOP); and clients that cut an
upload midway (any upload, 1 in 20). Each instance reaches the database and the store through a relay of its own
(tests/support.TcpProxy), so that freezing one of them stalls both instances.

At the end, after the janitor's grace: every acknowledged version that rotation keeps is listed and downloads
byte-identical; every listed version downloads with its recorded sha256; the bucket holds exactly the objects of
the listed versions (no orphan, no multipart upload left); every collection takes a new upload (none is left
locked); ``backup-repository --verify`` is clean; no server log holds a traceback. Exit 0 when all hold, 1
otherwise; the figures are printed (and written as JSON with ``--json FILE``).

    python -m tests.soak [--minutes 6] [--clients 6] [--json soak.json]
"""

import argparse
import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

from tests import pg_cluster, support
from tests.integration.collections_config import PASSWORD, collection, write_collections_config
from tests.integration.collections_config import version_path as path
from tests.minio import MinioServer, find_minio, TOOLS_HINT

COLLECTIONS = [f"soak-{index}" for index in range(4)]
KEEP = 3  # maxBackupsCount of each collection: rotation runs all the time
LEASE = 15  # --upload-lease: longer than a database freeze, short enough for a quick final grace
JANITOR = 5  # --janitor-interval


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = {}  # (collection, number) -> sha256
        self.figures = Counter()
        self.problems = []  # found while the load runs

    def count(self, key: str, amount: int = 1):
        with self.lock:
            self.figures[key] += amount


class Instance:
    """One server process on a fixed port, reaching the database and the store through relays of its own."""

    def __init__(self, name, args, env, workdir: Path, pg_relay, store_relay):
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.pg_relay, self.store_relay = pg_relay, store_relay
        self.port = support.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.server = support.Server([*self.args, f"--listen=127.0.0.1:{self.port}"], self.env,
                                     self.workdir / f"{self.name}.log")
        self.server.start(timeout=60)

    def kill(self):
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(10)
        self.server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="minutes of load with faults (default 6)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    if find_minio() is None:
        print(f"soak: {TOOLS_HINT}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="br-soak-"))
    print(f"soak: seed {seed}, work directory {workdir}", flush=True)
    cleanup = []
    try:
        return run(options, workdir, cleanup)
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 — clean up the rest whatever happens
                print(f"soak: clean-up: {exc}", file=sys.stderr)


def run(options, workdir: Path, cleanup: list) -> int:
    dsn = os.environ.get("BR_TEST_PG_DSN")
    if not dsn:
        bindir = pg_cluster.find_bindir()
        if bindir is None:
            print(f"soak: {support.PG_HINT}", file=sys.stderr)
            return 2
        cluster = pg_cluster.Cluster(bindir)
        dsn = cluster.start()
        cleanup.append(cluster.stop)
    params = support.create_pg_database(dsn)
    cleanup.append(lambda: support.drop_pg_database(dsn, params["dbname"]))
    (workdir / "minio").mkdir()
    minio = MinioServer(workdir / "minio").start()
    cleanup.append(minio.stop)
    bucket = f"br-soak-{uuid.uuid4().hex[:12]}"
    s3 = support.s3_client(minio.endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})

    config = support.ConfigDir(workdir / "config")
    write_collections_config(config)
    for name in COLLECTIONS:
        config.write(support.COLLECTIONS, name, collection(name, max_count=KEEP, one="4M", total="20M"))
    env = support.base_env(workdir)
    env.update(AWS_ACCESS_KEY_ID=support.S3_KEY, AWS_SECRET_ACCESS_KEY=support.S3_SECRET)

    instances = []
    for name in ("a", "b"):
        pg_relay = support.TcpProxy(params["host"], params["port"]).start()
        store_relay = support.TcpProxy(*minio.endpoint.split(":")).start()
        cleanup.extend([pg_relay.stop, store_relay.stop])
        args = [f"--jwt-secret-key={support.JWT_SECRET}", f"--health-check-key={support.HEALTH_KEY}",
                f"--config-local-path={config.root}", "--config-reload-interval=5s",
                *support.pg_flags({**params, "port": pg_relay.port}),
                f"--storage-url=s3://{bucket}?endpoint=127.0.0.1:{store_relay.port}&disableSSL=true"
                "&s3ForcePathStyle=true&region=eu-central-1",
                f"--upload-lease={LEASE}s", f"--janitor-interval={JANITOR}s", "--log-format=json",
                "--rate-default-limit=1000000", "--rate-auth-limit=1000000"]
        instance = Instance(name, args, env, workdir, pg_relay, store_relay)
        instance.start()
        cleanup.append(lambda i=instance: i.server.stop())
        instances.append(instance)

    token = requests.post(instances[0].url + "/api/stable/auth/login",
                          json={"username": "admin", "password": PASSWORD}, timeout=30).json()["data"]["token"]
    ledger = Ledger()
    stop = threading.Event()
    began = time.monotonic()
    clients = [threading.Thread(target=client, args=(index, instances, token, ledger, stop))
               for index in range(options.clients)]
    for thread in clients:
        thread.start()
    faults = threading.Thread(target=inject_faults, args=(instances, minio, ledger, stop))
    faults.start()
    time.sleep(options.minutes * 60)
    stop.set()
    faults.join()
    for thread in clients:
        thread.join(120)
    load_seconds = time.monotonic() - began
    grace = LEASE + 5 + 2 * JANITOR + 5
    print(f"soak: load over after {load_seconds:.0f}s; waiting {grace}s for the janitor's grace", flush=True)
    time.sleep(grace)

    problems = list(ledger.problems)
    problems += check_end_state(instances, token, ledger, s3, bucket)
    problems += verify(instances[0], env)
    logs = "".join(instance.server.raw_log() for instance in instances)
    for instance in instances:
        if "Traceback" in instance.server.raw_log():
            problems.append(f"the log of instance {instance.name} holds a traceback")
    ledger.figures["janitor_take_overs"] = logs.count("janitor: an upload of")
    ledger.figures["uploads_told_taken_over"] = logs.count("was taken over by the janitor")
    if ledger.figures["uploads_told_taken_over"] > ledger.figures["janitor_take_overs"]:
        problems.append("uploads were told the janitor had taken them over more often than it did")
    figures = dict(sorted(ledger.figures.items()))
    figures.update(seconds=round(load_seconds), acknowledged_versions=len(ledger.acknowledged),
                   megabytes_per_second=round(ledger.figures["uploaded_bytes"] / load_seconds / 1e6, 2),
                   restarts=sum(instance.starts - 1 for instance in instances), problems=problems)
    print(json.dumps(figures, indent=2))
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=2) + "\n")
    print("soak: " + ("clean" if not problems else f"{len(problems)} problem(s)"), flush=True)
    return 0 if not problems else 1


def client(index: int, instances, token: str, ledger: Ledger, stop: threading.Event):
    rng = random.Random(index)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        instance = rng.choice(instances)
        name = rng.choice(COLLECTIONS)
        try:
            if rng.random() < 0.55:
                upload(rng, instance, name, token, ledger, session, headers)
            else:
                download(rng, instance, name, ledger, session, headers)
        except (requests.RequestException, OSError):
            ledger.count("connection_errors")  # an instance killed or restarting
            time.sleep(0.2)


def upload(rng, instance, name, token, ledger, session, headers):
    body = support.pgp_message(os.urandom(rng.randrange(50_000, 2_000_000)))
    if rng.random() < 0.05:  # a client cut midway
        raw = support.RawUpload(instance.url, path(name), token, chunked=True)
        raw.send(body[: len(body) // 2])
        time.sleep(rng.random())
        raw.close()
        ledger.count("uploads_cut_by_client")
        return
    answer = session.post(instance.url + path(name), data=body, headers=headers, timeout=120)
    ledger.count(f"uploads_{answer.status_code}")
    if answer.status_code == 200:
        number = answer.json()["data"]["version"]["versionNumber"]
        with ledger.lock:
            if (name, number) in ledger.acknowledged:
                ledger.figures["duplicate_numbers"] += 1
            ledger.acknowledged[(name, number)] = hashlib.sha256(body).hexdigest()
            ledger.figures["uploaded_bytes"] += len(body)


def download(rng, instance, name, ledger, session, headers):
    with ledger.lock:
        known = [key for key in ledger.acknowledged if key[0] == name]
    if not known:
        return
    key = max(known, key=lambda k: k[1]) if rng.random() < 0.5 else rng.choice(known)
    answer = session.get(instance.url + path(name, f"/{key[1]}"), headers=headers, timeout=120)
    ledger.count(f"downloads_{answer.status_code}")
    if answer.status_code == 200:
        if hashlib.sha256(answer.content).hexdigest() != ledger.acknowledged[key]:
            ledger.count("corrupt_downloads")
        else:
            ledger.count("downloads_checked")


def inject_faults(instances, minio, ledger: Ledger, stop: threading.Event):
    rng = random.Random(7)
    kinds = itertools.cycle(["kill", "database", "kill", "store"])  # every kind, kills twice as often
    while not stop.wait(rng.uniform(20, 40)):
        kind = next(kinds)
        ledger.count(f"faults_{kind}")
        if kind == "kill":
            instance = rng.choice(instances)
            instance.kill()
            time.sleep(1)
            try:
                instance.start()
            except RuntimeError as exc:
                ledger.problems.append(f"instance {instance.name} did not start again: {str(exc)[-500:]}")
                return
        elif kind == "database":
            for instance in instances:
                instance.pg_relay.pause()
            time.sleep(5)
            for instance in instances:
                instance.pg_relay.resume()
        else:
            minio.freeze()
            time.sleep(5)
            minio.thaw()
        print(f"soak: fault {kind} at {time.strftime('%H:%M:%S')}", flush=True)


def check_end_state(instances, token: str, ledger: Ledger, s3, bucket: str) -> list:
    problems = []
    headers = {"Authorization": f"Bearer {token}"}
    instance = instances[0]
    expected_objects = set()
    if ledger.figures["duplicate_numbers"]:
        problems.append(f"{ledger.figures['duplicate_numbers']} version numbers were acknowledged twice")
    if ledger.figures["corrupt_downloads"]:
        problems.append(f"{ledger.figures['corrupt_downloads']} downloads differed from what was uploaded")
    for name in COLLECTIONS:
        listed = requests.get(instance.url + path(name), headers=headers, timeout=60).json()["data"]["versions"]
        numbers = {version["versionNumber"] for version in listed}
        oldest_kept = min(numbers) if numbers else 0
        for (collection_id, number), sha in ledger.acknowledged.items():
            if collection_id == name and number >= oldest_kept and number not in numbers:
                problems.append(f"{name} v{number}: acknowledged, newer than the oldest version kept, but not listed")
        for version in listed:
            number = version["versionNumber"]
            expected_objects.add(f"{name}/{name}-{number}.gpg")
            body = requests.get(instance.url + path(name, f"/{number}"), headers=headers, timeout=120)
            digest = hashlib.sha256(body.content).hexdigest()
            if body.status_code != 200 or digest != version["sha256"]:
                problems.append(f"{name} v{number}: download answered {body.status_code}, sha256 {digest[:12]}")
            elif (name, number) in ledger.acknowledged and ledger.acknowledged[(name, number)] != digest:
                problems.append(f"{name} v{number}: not the bytes that were acknowledged")
            ledger.count("final_versions_checked")
        fresh = requests.post(instance.url + path(name), data=support.pgp_message(b"after the soak"),
                              headers=headers, timeout=60)
        if fresh.status_code != 200:
            problems.append(f"{name}: an upload after the soak answered {fresh.status_code} (left locked?)")
        else:
            expected_objects.add(f"{name}/{name}-{fresh.json()['data']['version']['versionNumber']}.gpg")
            # the fresh upload may have rotated the oldest version out
            listed = requests.get(instance.url + path(name), headers=headers, timeout=60).json()["data"]["versions"]
            kept = {f"{name}/{name}-{v['versionNumber']}.gpg" for v in listed}
            expected_objects = {o for o in expected_objects if not o.startswith(f"{name}/")} | kept
    stored = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        stored.update(item["Key"] for item in page.get("Contents", []) if not item["Key"].startswith(".health-"))
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if stored - expected_objects:
        problems.append(f"orphans in the bucket: {sorted(stored - expected_objects)[:10]}")
    if expected_objects - stored:
        problems.append(f"listed versions without an object: {sorted(expected_objects - stored)[:10]}")
    if uploads:
        problems.append(f"{len(uploads)} multipart uploads left: {[u['Key'] for u in uploads][:10]}")
    ledger.count("final_objects", len(stored))
    return problems


def verify(instance, env) -> list:
    args = [arg for arg in instance.args if not arg.startswith(("--listen", "--log-format"))]
    done = subprocess.run([sys.executable, "-m", "backup_repository", "--verify", *args], capture_output=True,
                          text=True, env=env, cwd=str(support.ROOT), timeout=600)
    print(f"soak: --verify: {done.stderr.strip()}", flush=True)
    if done.returncode != 0:
        return [f"--verify exited {done.returncode}: {done.stdout.strip()[:2000]}"]
    return []


if __name__ == "__main__":
    sys.exit(main())
