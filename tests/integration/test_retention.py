"""minimumRetention (docs/configuration.md#minimum-retention): a floor that no stolen credential can cut short.

Real servers on SQLite and PostgreSQL, a local directory and MinIO with Object Lock; uploads with an
upload-only access key, as a stolen one would be used; the bucket attacked with its own credentials through boto3.
"""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from backup_repository.domain.versions import free_from
from tests.integration.collections_config import PASSWORD, acl, collection
from tests.integration.collections_config import version_path as path
from tests.support import COLLECTIONS, GO_ADMIN_HASH, pgp_message, s3_client, wait_until

METRICS_TOKEN = "retention-metrics-token"
FULL = re.compile(r"collection is full: its oldest version is protected until (\S+Z)$")
#: (database, storage, Object Lock mode of the bucket)
STORES = [("sqlite", "local", None), ("postgres", "local", None), ("sqlite", "s3", "governance"),
          ("postgres", "s3", "compliance")]


def write_config(config, floor: str, count: int = 3, one: str = "1M", total: str = "5M", strategy: str = ""):
    """``vault`` with the floor; ``plain``, the same without one. ``owner`` holds an upload-only access key
    ``owner$up`` on vault (the credential a backed-up machine keeps, so the one an attacker steals); ``reader``
    may download."""
    config.user("reader", GO_ADMIN_HASH)
    config.user("owner", GO_ADMIN_HASH, roles=["collectionManager"], extra=f"""  accessKeys:
    - name: up
      password: "{GO_ADMIN_HASH}"
      objects:
        - name: vault
          type: collection
          roles: [backupUploader]
""")
    grants = acl(("owner", ["backupUploader"]), ("reader", ["backupDownloader"]))
    config.write(COLLECTIONS, "vault", collection("vault", max_count=count, one=one, total=total,
                                                  extra=f"  minimumRetention: {floor}\n{strategy}{grants}"))
    config.write(COLLECTIONS, "plain", collection("plain", max_count=count, one=one, total=total,
                                                  extra=f"{strategy}{grants}"))


def start(make_backend, config, start_server, store, *extra):
    db, storage, lock = store
    backend = make_backend(db, storage, object_lock=lock)
    server = start_server(backend, config, f"--metrics-token={METRICS_TOKEN}", "--metrics-refresh-interval=0.2s",
                          *extra)
    return backend, server


def upload(server, token, collection_id, body):
    return server.request("POST", path(collection_id), token, data=body)


def versions(server, token, collection_id="vault") -> list:
    answer = server.get(path(collection_id), token)
    assert answer.status_code == 200, answer.text
    return sorted(v["versionNumber"] for v in answer.json()["data"]["versions"])


def protected_until(response) -> datetime:
    """The time named by a refusal for the floor (429, Retry-After), checked against the header."""
    assert response.status_code == 429, response.text
    match = FULL.fullmatch(response.json()["error"])
    assert match, response.text
    until = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
    retry_after = int(response.headers["Retry-After"])
    remaining = (until - datetime.now(timezone.utc)).total_seconds()
    assert 1 <= retry_after and abs(retry_after - remaining) <= 2, (retry_after, remaining)
    return until


def wait_past(moment: datetime):
    time.sleep(max(0.0, (moment - datetime.now(timezone.utc)).total_seconds()) + 0.3)


def metric(server, line_start: str) -> float:
    text = server.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].split()[-1]) if found else float("nan")


def health_check(server, name: str) -> dict:
    answer = server.get("/api/stable/repository/collection/vault/health")
    return {check["name"]: check for check in answer.json()["data"]["health"]}.get(name)


@pytest.mark.parametrize("store", STORES, ids=["-".join(filter(None, s)) for s in STORES])
def test_a_stolen_upload_key_cannot_rotate_history_away(make_backend, config, start_server, store):
    """The attack: the access key of a backed-up machine pushes versions as fast as the server lets it. Once the
    free slot is used, every further upload is refused, and every version that existed before the attack is still
    there, byte for byte."""
    write_config(config, floor="1h", count=3)
    backend, server = start(make_backend, config, start_server, store)
    owner, reader = server.login("owner", PASSWORD), server.login("reader", PASSWORD)
    good = [pgp_message(f"good backup {n}".encode() * 1000) for n in (1, 2)]
    for body in good:
        assert upload(server, owner, "vault", body).status_code == 200
    objects_before = backend.objects()

    stolen = server.login("owner$up", PASSWORD)
    junk = pgp_message(b"junk" * 1000)
    assert upload(server, stolen, "vault", junk).status_code == 200  # the free slot
    refusals = [upload(server, stolen, "vault", junk) for _ in range(6)]
    untils = {protected_until(answer) for answer in refusals}
    assert len(untils) == 1  # the oldest good version's floor, each time

    assert versions(server, reader) == [1, 2, 3]
    for number, body in zip((1, 2), good):
        download = server.get(path("vault", f"/{number}"), reader)
        assert download.status_code == 200 and download.content == body
    assert set(objects_before) <= set(backend.objects())
    assert server.request("DELETE", path("vault", "/1"), stolen).status_code in (403, 404, 405)  # no other way
    assert versions(server, reader) == [1, 2, 3]
    # counted, and told by health and metrics before a real backup job meets the refusal
    assert metric(server, 'backup_repository_uploads_total{outcome="protected"}') == 6
    assert health_check(server, "MinimumRetentionValidator")["status"] is False
    assert wait_until(lambda: metric(server, 'backup_repository_collection_retention_ok{collection="vault"}') == 0)
    assert metric(server, 'backup_repository_collection_minimum_retention_seconds{collection="vault"}') == 3600

    # the same uploads to a collection without the floor rotate as before
    for _ in range(5):
        assert upload(server, owner, "plain", junk).status_code == 200
    assert versions(server, reader, "plain") == [3, 4, 5]
    assert health_check(server, "MinimumRetentionValidator") is not None
    plain = server.get("/api/stable/repository/collection/plain/health").json()["data"]["health"]
    assert "MinimumRetentionValidator" not in {check["name"] for check in plain}


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_the_boundary_refused_before_the_floor_accepted_after_and_rotation_takes_exactly_the_oldest(
        make_backend, config, start_server, db):
    write_config(config, floor="4s", count=2)
    backend, server = start(make_backend, config, start_server, (db, "local", None))
    owner = server.login("owner", PASSWORD)
    bodies = {n: pgp_message(f"version {n}".encode() * 100) for n in (1, 2, 3)}
    for n in (1, 2):
        assert upload(server, owner, "vault", bodies[n]).status_code == 200
    refused = upload(server, owner, "vault", bodies[3])
    until = protected_until(refused)
    assert until - datetime.now(timezone.utc) < timedelta(seconds=5)
    assert health_check(server, "MinimumRetentionValidator")["message"].startswith(
        "collection is full of protected versions: the next upload will be refused until ")
    assert versions(server, owner) == [1, 2]

    wait_past(until)
    assert health_check(server, "MinimumRetentionValidator")["status"] is True
    stored = upload(server, owner, "vault", bodies[3])
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["version"]["versionNumber"] == 3  # the refused attempts used no number
    assert versions(server, owner) == [2, 3]
    assert sorted(backend.objects()) == ["vault/vault-2.gpg", "vault/vault-3.gpg"]
    assert server.get(path("vault", "/2"), owner).content == bodies[2]
    assert metric(server, "backup_repository_rotation_deleted_versions_total") == 1


@pytest.mark.parametrize("store", [("sqlite", "local", None), ("postgres", "s3", "governance")],
                         ids=["sqlite-local", "postgres-s3-governance"])
def test_a_size_budget_held_by_a_protected_version_is_refused_mid_stream_leaving_nothing(
        make_backend, config, start_server, store):
    """fifo-plus-older: v1 outlives keepLastOlderNotMoreThan, so rotation wants it gone, but its floor keeps it and
    its megabyte stays in maxCollectionSize. A body that would fit without the floor is refused the moment it
    passes the room left, with the floor's message; a declared Content-Length is refused before the body."""
    strategy = "  strategyName: fifo-plus-older\n  strategySpec:\n    keepLastOlderNotMoreThan: 3s\n    maxOlderCopies: 1\n"
    write_config(config, floor="9s", count=1, one="1M", total="2560K", strategy=strategy)
    backend, server = start(make_backend, config, start_server, store)
    owner = server.login("owner", PASSWORD)
    megabyte = pgp_message(b"m" * ((1 << 20) - 100))
    assert upload(server, owner, "vault", megabyte).status_code == 200
    time.sleep(2)
    assert upload(server, owner, "vault", megabyte).status_code == 200  # v1, still young, becomes the older copy
    time.sleep(1.5)  # v1 is past keepLastOlderNotMoreThan, not past its floor; v2 is young
    objects_before, versions_before = backend.objects(), versions(server, owner)

    created = {v["versionNumber"]: datetime.fromisoformat(v["CreatedAt"].replace("Z", "+00:00"))
               for v in server.get(path("vault"), owner).json()["data"]["versions"]}

    def refused_for_the_floor(response) -> datetime:
        """v1's floor is in the way — or, once v2 too has passed keepLastOlderNotMoreThan (3 s; a slow machine
        gets there during these requests), rotation wants both gone and v2's later floor is the one named. The
        clock decides which, so either is accepted, each only when it is the right one."""
        until, answered = protected_until(response), datetime.now(timezone.utc)
        floors = {number: free_from(moment + timedelta(seconds=9)) for number, moment in created.items()}
        named = free_from(until)
        assert named == floors[1] or (named == floors[2] and answered >= created[2] + timedelta(seconds=3)), (
            named, floors, answered)
        return until

    streamed = upload(server, owner, "vault", (megabyte[i:i + 65536] for i in range(0, len(megabyte), 65536)))
    until = refused_for_the_floor(streamed)
    refused_for_the_floor(upload(server, owner, "vault", megabyte))  # declared: refused before the body
    assert backend.objects() == objects_before and versions(server, owner) == versions_before == [1, 2]
    assert "upload of vault v3 started" in server.log()  # the streamed one got as far as the storage

    wait_past(until)
    stored = upload(server, owner, "vault", megabyte)
    if stored.status_code == 429:  # v2 has grown past keepLastOlderNotMoreThan meanwhile: it waits for its floor
        wait_past(protected_until(stored))
        stored = upload(server, owner, "vault", megabyte)
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["version"]["versionNumber"] == 3  # the refused uploads used no number
    assert 1 not in versions(server, owner)
    # a body too large even without the floor is the plain 413
    assert upload(server, owner, "vault", pgp_message(b"x" * (3 << 20))).status_code == 413


@pytest.mark.parametrize("mode", ["governance", "compliance"])
def test_s3_object_lock_protects_each_version_in_the_bucket_until_its_floor(make_backend, config, start_server,
                                                                            mode):
    write_config(config, floor="5s", count=1)
    backend, server = start(make_backend, config, start_server, ("sqlite", "s3", mode))
    owner = server.login("owner", PASSWORD)
    client = s3_client(backend.s3_endpoint)
    began = datetime.now(timezone.utc).replace(microsecond=0)
    assert upload(server, owner, "vault", pgp_message(b"first" * 1000)).status_code == 200
    ended = datetime.now(timezone.utc)
    head = client.head_object(Bucket=backend.bucket, Key="vault/vault-1.gpg")
    assert head["ObjectLockMode"] == mode.upper()
    assert began + timedelta(seconds=5) <= head["ObjectLockRetainUntilDate"] <= ended + timedelta(seconds=5)
    # the bucket's own credentials cannot delete the version while it is protected
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=backend.bucket, Key="vault/vault-1.gpg", VersionId=head["VersionId"])
    # AWS answers 403 AccessDenied; MinIO, the store here, 400 InvalidRequest (docs/scaling.md#what-is-guaranteed)
    assert refused.value.response["Error"]["Code"] in ("AccessDenied", "InvalidRequest"), refused.value.response
    # a version of a collection without a floor is not locked
    assert upload(server, owner, "plain", pgp_message(b"plain" * 1000)).status_code == 200
    assert "ObjectLockMode" not in client.head_object(Bucket=backend.bucket, Key="plain/plain-1.gpg")

    until = protected_until(upload(server, owner, "vault", pgp_message(b"second" * 1000)))
    wait_past(until)
    assert upload(server, owner, "vault", pgp_message(b"second" * 1000)).status_code == 200
    # rotation removed v1's version itself (its space is free), not just hidden it behind a delete marker
    listed = client.list_object_versions(Bucket=backend.bucket, Prefix="vault/")
    assert [v["Key"] for v in listed.get("Versions", [])] == ["vault/vault-2.gpg"]
    assert listed.get("DeleteMarkers", []) == []
    assert "delete marker" not in server.log()  # the lock had ended when the server's floor did


def test_object_lock_on_a_bucket_without_it_stops_the_start(make_backend, config, start_server):
    write_config(config, floor="1h")
    backend = make_backend("sqlite", "s3")
    flags = [arg + "&objectLock=governance" if arg.startswith("--storage-url=") else arg for arg in backend.args]
    backend.args[:] = flags
    with pytest.raises(RuntimeError) as failed:
        start_server(backend, config)
    assert (f"cannot start: the bucket '{backend.bucket}' does not have S3 Object Lock enabled, but the storage URL "
            "asks for objectLock=governance") in str(failed.value)


def test_object_lock_needs_a_known_mode_and_s3(make_backend, config, start_server):
    write_config(config, floor="1h")
    backend = make_backend("sqlite", "local")
    backend.args[:] = [arg + "?objectLock=governance" if arg.startswith("--storage-url=") else arg
                       for arg in backend.args]
    with pytest.raises(RuntimeError) as failed:
        start_server(backend, config)
    assert "objectLock is an option of s3:// storage only" in str(failed.value)
    locked = make_backend("sqlite", "s3", object_lock="governance")
    locked.args[:] = [arg.replace("objectLock=governance", "objectLock=forever") for arg in locked.args]
    with pytest.raises(RuntimeError) as failed:
        start_server(locked, config)
    assert "objectLock must be governance or compliance, not 'forever'" in str(failed.value)
