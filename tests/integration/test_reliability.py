"""Nothing acknowledged is ever lost, nothing stored is ever orphaned (docs/scaling.md#what-is-guaranteed) — on a
real S3 server (MinIO), real PostgreSQL and real server processes; faults are made by stalling or cutting the
network between a server and its database or store (tests/support.TcpProxy) and by kill -9."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
import requests

from tests import support
from tests.integration.collections_config import PASSWORD, collection, write_collections_config
from tests.integration.collections_config import version_path as path
from tests.support import COLLECTIONS, RawUpload, TcpProxy, pgp_message, wait_until, with_args

#: Short timeouts, so that the janitor of the code before leases would act within seconds: an upload's record
#: older than the upload timeout (2 s) + its margin (5 s) was taken for abandoned.
SHORT = ("--http-upload-timeout=2s", "--storage-io-timeout=2s")
METRICS_TOKEN = "metrics-token-for-tests"


@pytest.fixture
def cfg(config):
    write_collections_config(config)
    config.write(COLLECTIONS, "two", collection("two", max_count=2))
    return config


def health(server, collection_id: str) -> dict:
    answer = server.get(f"/api/stable/repository/collection/{collection_id}/health").json()
    return {check["name"]: check for check in answer["data"]["health"]}


def metric(server, name: str) -> str:
    """The value of the first line of /metrics that starts with ``name``."""
    text = server.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return next((line.split()[-1] for line in text.splitlines() if line.startswith(name)), None)


def pending_rows(backend) -> list:
    conn = psycopg2.connect(**backend.db_params)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT object_name FROM pending_uploads ORDER BY object_name")
            return cur.fetchall()
    finally:
        conn.close()


def a_server_cut_off_from_its_database(make_backend, cfg, start_server, *flags):
    """Server A reaches PostgreSQL through a proxy the test can pause; server B, on the same database and bucket,
    runs the janitor every second. Returns (backend, proxy, a, b, token)."""
    backend = make_backend("postgres", "minio")
    port = backend.db_params["port"]
    proxy = TcpProxy(backend.db_params["host"], port).start()
    a = start_server(with_args(backend, {f"--db-port={port}": f"--db-port={proxy.port}"}), cfg, *SHORT, *flags,
                     "--janitor-interval=1h")
    b = start_server(backend, cfg, *SHORT, *flags, "--janitor-interval=1s")
    return backend, proxy, a, b, a.login("admin", PASSWORD)


def commit_stalled_on_the_database(backend, proxy, server, token, body: bytes) -> RawUpload:
    """An upload to ``docs`` whose body has all arrived while the server cannot reach its database: it is stored,
    and its registration waits."""
    raw = RawUpload(server.url, path("docs"), token, chunked=True)
    raw.send(body[:-100])
    assert wait_until(lambda: pending_rows(backend), timeout=10), "the upload was recorded as pending"
    proxy.pause()
    raw.send(body[-100:])
    raw.end()
    return raw


# --- item 1: the janitor and a commit held past the upload timeout -----------------------------------------------

def test_an_upload_whose_commit_stalls_past_the_upload_timeout_keeps_its_object(make_backend, cfg, start_server):
    """The janitor decides by the upload's lease, which runs 45 s from its last renewal, not by the upload's age:
    a commit that stalls past --http-upload-timeout + 5 s is answered 200 and its object is there."""
    backend, proxy, a, b, token = a_server_cut_off_from_its_database(make_backend, cfg, start_server)
    body = pgp_message(os.urandom(300_000))
    raw = commit_stalled_on_the_database(backend, proxy, a, token, body)
    time.sleep(10)  # past the upload timeout + the margin, with B's janitor running every second
    assert "janitor: an upload of docs/docs-1.gpg" not in b.log()
    proxy.resume()
    status, answer = raw.response()
    assert status == 200, answer
    assert answer["data"]["version"]["versionNumber"] == 1
    time.sleep(2)  # B's janitor runs again
    download = b.get(path("docs", "/1"), token)
    assert download.status_code == 200 and hashlib.sha256(download.content).digest() == hashlib.sha256(body).digest()
    assert pending_rows(backend) == []


def test_an_upload_whose_lease_ran_out_is_refused_and_leaves_nothing(make_backend, cfg, start_server):
    """Cut off from its database for longer than --upload-lease, the upload's record is taken over by the janitor,
    which deletes the object; when the database comes back the upload can no longer register its version: 503,
    never a 200 for a version whose object is gone."""
    backend, proxy, a, b, token = a_server_cut_off_from_its_database(make_backend, cfg, start_server,
                                                                     "--upload-lease=3s")
    raw = commit_stalled_on_the_database(backend, proxy, a, token, pgp_message(os.urandom(300_000)))
    assert wait_until(lambda: "janitor: an upload of docs/docs-1.gpg to docs never finished" in b.log(),
                      timeout=30), b.log()[-2000:]
    assert backend.objects() == []
    proxy.resume()
    status, answer = raw.response()
    assert status == 503, answer
    assert answer["error"].startswith("the upload could not be registered in time")
    assert b.get(path("docs"), token).json()["data"]["versions"] == []
    assert wait_until(lambda: pending_rows(backend) == [] and backend.objects() == [], timeout=10)
    response = a.request("POST", path("docs"), token, data=pgp_message(b"the next one"))
    assert response.status_code == 200, response.text


# --- items 2 and 4: rotation's deletions are recorded until the store confirms them -------------------------------

def upload_three(server, token) -> list:
    bodies = [pgp_message(b"version %d " % number + os.urandom(1000)) for number in (1, 2, 3)]
    for body in bodies[:2]:
        assert server.request("POST", path("two"), token, data=body).status_code == 200
    return bodies


def verify(backend, cfg) -> subprocess.CompletedProcess:
    env = support.base_env(cfg.root.parent)
    env.update(backend.env)
    return subprocess.run([sys.executable, "-m", "backup_repository", "--verify", *backend.args,
                           f"--config-local-path={cfg.root}"], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("storage", ["minio", "gcs"])
def test_kill_9_between_the_version_and_its_object_then_the_janitor_deletes_it(make_backend, cfg, start_server,
                                                                                storage):
    """Rotation deletes the version's row and records the deletion of its object in one transaction; killed
    before the store has deleted the object, the record stays and the janitor finishes the deletion. --verify
    accounts for every object meanwhile, and reports one that nothing accounts for. On MinIO, and on GCS's
    emulator (the proxy is named by STORAGE_EMULATOR_HOST there)."""
    backend = make_backend("postgres", storage)
    endpoint = backend.gcs_endpoint if storage == "gcs" else backend.s3_endpoint
    store = TcpProxy(*endpoint.split(":")).start()
    a = start_server(with_args(backend, {endpoint: f"127.0.0.1:{store.port}"}), cfg, "--janitor-interval=1h")
    token = a.login("admin", PASSWORD)
    bodies = upload_three(a, token)
    store.hold_requests(b"DELETE ")  # the store's answer to the deletion never comes
    def upload_the_third():
        try:
            a.request("POST", path("two"), token, data=bodies[2])
        except requests.RequestException:
            pass  # the server is killed before it answers

    third = threading.Thread(target=upload_the_third)
    third.start()
    assert store.held.wait(20), "rotation sent its DELETE"
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    third.join(10)
    assert "two/two-1.gpg" in backend.objects()  # the object outlived its version

    checked = verify(backend, cfg)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 intact, 0 corrupt, 0 missing; 0 objects nothing accounts for" in checked.stderr
    backend.put_object("two/stray.gpg", b"someone's")
    checked = verify(backend, cfg)
    assert checked.returncode == 1 and checked.stdout.startswith("two/stray.gpg: in the storage, but no version"), (
        checked.stdout + checked.stderr)

    b = start_server(backend, cfg, "--janitor-interval=1s")
    assert wait_until(lambda: "two/two-1.gpg" not in backend.objects(), timeout=20), backend.objects()
    # the line follows the store's confirmation: the object may be gone a moment before it is written
    assert wait_until(lambda: "janitor: deleted two/two-1.gpg (v1 of two)" in b.log(), timeout=10), b.log()[-2000:]
    listed = [v["versionNumber"] for v in b.get(path("two"), token).json()["data"]["versions"]]
    assert listed == [2, 3]
    for number, body in ((2, bodies[1]), (3, bodies[2])):
        assert b.get(path("two", f"/{number}"), token).content == body
    store.stop()


def test_a_deletion_the_store_fails_is_reported_and_retried(make_backend, cfg, start_server, minio_server):
    """Each deletion is checked: one that fails stays recorded, fails StorageConsistencyValidator and counts in
    the metrics, until the janitor's retry succeeds."""
    backend = make_backend("postgres", "minio")
    store = TcpProxy(*minio_server.endpoint.split(":")).start()
    a = start_server(with_args(backend, {f"endpoint={minio_server.endpoint}": f"endpoint=127.0.0.1:{store.port}"}),
                     cfg, "--janitor-interval=1s", f"--metrics-token={METRICS_TOKEN}",
                     "--metrics-refresh-interval=0.5s")
    token = a.login("admin", PASSWORD)
    bodies = upload_three(a, token)
    store.cut_requests(b"DELETE ")  # every deletion fails on the way to the store
    assert a.request("POST", path("two"), token, data=bodies[2]).status_code == 200
    assert store.cut >= 1
    assert "two/two-1.gpg" in backend.objects()
    check = health(a, "two")["StorageConsistencyValidator"]
    assert check["status"] is False
    assert check["message"].startswith(
        "objects of deleted versions still in the storage (the janitor retries): v1 (two/two-1.gpg): "), check

    assert float(metric(a, "backup_repository_deletions_refused_total")) >= 1
    assert wait_until(lambda: metric(a, 'backup_repository_collection_undeleted_objects{collection="two"}') == "1.0")
    time.sleep(1.5)
    assert "two/two-1.gpg" in backend.objects()  # the janitor's retries fail as well meanwhile

    store.cut_requests(None)
    assert wait_until(lambda: "two/two-1.gpg" not in backend.objects(), timeout=20), backend.objects()
    assert wait_until(lambda: health(a, "two")["StorageConsistencyValidator"]["status"] is True)
    assert wait_until(lambda: metric(a, 'backup_repository_collection_undeleted_objects{collection="two"}') == "0.0")
    store.stop()


def credentials_that_cannot_delete(endpoint: str, bucket: str, prefix: str) -> dict:
    """Temporary credentials from MinIO's STS (AssumeRole) whose session policy allows everything but deleting
    under ``prefix``: the store itself refuses those deletions (403 AccessDenied), as it does for a key without
    s3:DeleteObject or under a bucket policy that denies it. The environment of a server that uses them."""
    import boto3

    sts = boto3.client("sts", endpoint_url=f"http://{endpoint}", aws_access_key_id=support.S3_KEY,
                       aws_secret_access_key=support.S3_SECRET, region_name="eu-central-1")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]},
        {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
         "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]}]}
    granted = sts.assume_role(RoleArn="arn:xxx:xxx:xxx:xxxx", RoleSessionName="no-deletions",
                              Policy=json.dumps(policy), DurationSeconds=3600)["Credentials"]
    return {"AWS_ACCESS_KEY_ID": granted["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": granted["SecretAccessKey"],
            "AWS_SESSION_TOKEN": granted["SessionToken"]}


def test_a_deletion_the_store_refuses_is_reported_and_retried(make_backend, cfg, start_server):
    """The store answers rotation's deletion with a refusal (MinIO, 403 AccessDenied: the server's credentials may
    not delete there), not a broken connection: the deletion stays recorded, is reported by the collection health
    and the metrics, is retried by the janitor on every pass, and is finished by the janitor of an instance whose
    credentials may delete."""
    backend = make_backend("postgres", "minio")
    refused = credentials_that_cannot_delete(backend.s3_endpoint, backend.bucket, "two/")
    a = start_server(backend, cfg, "--janitor-interval=1s", f"--metrics-token={METRICS_TOKEN}",
                     "--metrics-refresh-interval=0.5s", env=refused)
    token = a.login("admin", PASSWORD)
    bodies = upload_three(a, token)
    assert a.request("POST", path("two"), token, data=bodies[2]).status_code == 200  # rotates v1 out
    assert "two/two-1.gpg" in backend.objects()
    assert [v["versionNumber"] for v in a.get(path("two"), token).json()["data"]["versions"]] == [2, 3]
    check = health(a, "two")["StorageConsistencyValidator"]
    assert check["status"] is False
    assert check["message"].startswith(
        "objects of deleted versions still in the storage (the janitor retries): v1 (two/two-1.gpg): "), check
    assert "AccessDenied" in check["message"], check  # the store's own refusal, its code and message, not its XML
    assert "<" not in check["message"], check
    assert float(metric(a, "backup_repository_deletions_refused_total")) >= 1
    assert wait_until(lambda: metric(a, 'backup_repository_collection_undeleted_objects{collection="two"}') == "1.0")
    # the janitor retries on every pass, and is refused each time
    assert wait_until(lambda: a.log().count("the store kept two/two-1.gpg") >= 3, timeout=20), a.log()[-2000:]
    assert "two/two-1.gpg" in backend.objects()
    a.stop()

    b = start_server(backend, cfg, "--janitor-interval=1s")  # the backend's own credentials: it may delete
    assert wait_until(lambda: "two/two-1.gpg" not in backend.objects(), timeout=20), backend.objects()
    # the line follows the store's confirmation: the object may be gone a moment before it is written
    assert wait_until(lambda: "janitor: deleted two/two-1.gpg (v1 of two)" in b.log(), timeout=10), b.log()[-2000:]
    assert wait_until(lambda: health(b, "two")["StorageConsistencyValidator"]["status"] is True)
    assert backend.objects() == ["two/two-2.gpg", "two/two-3.gpg"]
    for number, body in ((2, bodies[1]), (3, bodies[2])):
        assert b.get(path("two", f"/{number}"), token).content == body


def test_a_locked_object_under_a_legal_hold_is_hidden_not_left_current(make_backend, config, start_server):
    """MinIO refuses the deletion of a locked object version with 400 InvalidRequest (AWS: 403 AccessDenied): the
    object is hidden behind a delete marker (docs/configuration.md#s3-object-lock), never left current."""
    backend = make_backend("sqlite", "minio", object_lock="governance")
    write_collections_config(config)
    # 2 s: the lock's date is rounded down to the second, and MinIO refuses one already past (with 1 s it can be)
    config.write(COLLECTIONS, "vault", collection("vault", max_count=1, extra="  minimumRetention: 2s\n"))
    server = start_server(backend, config)
    token = server.login("admin", PASSWORD)
    assert server.request("POST", path("vault"), token, data=pgp_message(b"first")).status_code == 200
    client = support.s3_client(backend.s3_endpoint)
    head = client.head_object(Bucket=backend.bucket, Key="vault/vault-1.gpg")
    client.put_object_legal_hold(Bucket=backend.bucket, Key="vault/vault-1.gpg", VersionId=head["VersionId"],
                                 LegalHold={"Status": "ON"})
    time.sleep(2.2)  # the floor has passed
    assert server.request("POST", path("vault"), token, data=pgp_message(b"second")).status_code == 200
    assert backend.objects() == ["vault/vault-2.gpg"]  # vault-1 is no longer current
    versions = client.list_object_versions(Bucket=backend.bucket, Prefix="vault/vault-1.gpg")
    assert [v["VersionId"] for v in versions["Versions"]] == [head["VersionId"]]  # its data is kept, hidden
    assert health(server, "vault")["StorageConsistencyValidator"]["status"] is True
    client.put_object_legal_hold(Bucket=backend.bucket, Key="vault/vault-1.gpg", VersionId=head["VersionId"],
                                 LegalHold={"Status": "OFF"})


# --- item 5 on a real store ----------------------------------------------------------------------------------------

def test_a_download_racing_the_rotation_of_its_version_is_404(make_backend, cfg, start_server):
    """Downloads of the oldest version while uploads rotate it away: each answer is the version (200) or 404
    `cannot find specified version` — never 503, whose store would seem away."""
    backend = make_backend("postgres", "minio")
    server = start_server(backend, cfg)
    token = server.login("admin", PASSWORD)
    statuses, stop = [], threading.Event()

    def download_the_oldest():
        session = requests.Session()
        while not stop.is_set():
            listed = server.get(path("two"), token).json()["data"]["versions"]
            if listed:
                oldest = min(v["versionNumber"] for v in listed)
                answer = session.get(server.url + path("two", f"/{oldest}"),
                                     headers={"Authorization": f"Bearer {token}"})
                statuses.append((answer.status_code, answer.json()["error"] if answer.status_code != 200 else ""))

    readers = [threading.Thread(target=download_the_oldest) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for number in range(30):
            assert server.request("POST", path("two"), token, data=pgp_message(os.urandom(20_000))).status_code == 200
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert statuses and {status for status, _ in statuses} <= {200, 404}, statuses
    assert {error for status, error in statuses if status == 404} <= {"cannot find specified version"}
