"""The configuration used by the collection API tests: users, access keys and collections with small limits."""

from tests import support
from tests.support import COLLECTIONS, GO_ADMIN_HASH, RawUpload, pgp_message, wait_until

PASSWORD = "admin"  # every test user has the Go server's test-vector hash of "admin"
#: The start of every upload refusal about the body (docs/api.md#upload), and the two GPG ones
STREAM_ERROR = "cannot upload version. cannot upload file, cannot copy stream, error: "
GPG_HEADER = STREAM_ERROR + "first chunk of uploaded data does not contain a valid GPG header"
GPG_FOOTER = STREAM_ERROR + "end of stream does not contain a valid GPG footer, suspecting a data corruption"


def version_path(collection_id: str, suffix: str = "") -> str:
    return f"/api/stable/repository/collection/{collection_id}/version{suffix}"


def stalled_upload(server, backend, token, collection_id: str, size: int) -> RawUpload:
    """A chunked upload whose body is sent but for its last 100 bytes, returned once its object is in the store."""
    raw = RawUpload(server.url, version_path(collection_id), token, chunked=True)
    raw.send(pgp_message(b"x" * size)[:-100])
    assert wait_until(lambda: backend.objects(), timeout=10)
    return raw


def collection(name: str, max_count: int = 3, one: str = "1M", total: str = "5M", extra: str = "") -> str:
    return f"""apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
  name: {name}
spec:
  description: collection {name}
  filenameTemplate: {name}-${{version}}.gpg
  maxBackupsCount: {max_count}
  maxOneVersionSize: {one}
  maxCollectionSize: {total}
{extra}"""


def acl(*entries) -> str:
    lines = ["  accessControl:"]
    for user, roles in entries:
        lines.append(f"    - name: {user}\n      type: user\n      roles: [{', '.join(roles)}]")
    return "\n".join(lines) + "\n"


def write_collections_config(config):
    """Users: admin (systemAdmin), writer/reader (ACL roles), keyed (access keys), anytime (uploadsAnytime on
    the windowed collections), nobody (no roles). Collections: docs (fifo, 3 × 1M within 5M), older
    (fifo-plus-older), closed (a window that is closed now), open (a window that is always open)."""
    config.user("writer", GO_ADMIN_HASH)
    config.user("reader", GO_ADMIN_HASH)
    config.user("nobody", GO_ADMIN_HASH)
    config.user("anytime", GO_ADMIN_HASH)
    config.user("keyed", GO_ADMIN_HASH, roles=["collectionManager"], extra="""  accessKeys:
    - name: up
      password: "%s"
      objects:
        - name: docs
          type: collection
          roles: [backupUploader]
    - name: down
      password: "%s"
      objects:
        - name: docs
          type: collection
          roles: [backupDownloader]
""" % (GO_ADMIN_HASH, GO_ADMIN_HASH))
    config.write(COLLECTIONS, "docs", collection(
        "docs", extra=acl(("writer", ["backupUploader"]), ("reader", ["backupDownloader"]))))
    config.write(COLLECTIONS, "older", collection("older", max_count=2, total="4M", extra="""  strategyName: fifo-plus-older
  strategySpec:
    keepLastOlderNotMoreThan: 1h
    maxOlderCopies: 1
""" + acl(("writer", ["backupUploader", "backupDownloader"]))))
    windows_acl = acl(("writer", ["backupUploader"]), ("anytime", ["uploadsAnytime"]))
    config.write(COLLECTIONS, "closed", collection("closed", extra="""  windows:
    - from: "0 0 29 2 *"
      duration: 1m
""" + windows_acl))
    config.write(COLLECTIONS, "open", collection("open", extra="""  windows:
    - from: "* * * * *"
      duration: 2m
""" + windows_acl))


def module_server(work) -> support.Server:
    """One running server for a whole test module (SQLite and a local store under ``work``, the configuration of
    write_collections_config, no rate limits); the caller stops it."""
    from tests import conftest

    config = support.ConfigDir(work / "config")
    write_collections_config(config)
    (work / "storage").mkdir()
    args = ["--listen=127.0.0.1:0", *conftest.server_flags(config.root), f"--db-path={work / 'm.sqlite3'}",
            f"--storage-url=file://{work / 'storage'}"]
    server = support.Server(args, support.base_env(work), work / "server.log").start()
    server.storage = work / "storage"
    return server
