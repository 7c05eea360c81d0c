"""The command line as users run it: one-shot commands, start-up errors, the contract's typical command line."""

import base64
import hashlib
import os
import subprocess
import sys

import pytest

from backup_repository.security.passwords import verify_password
from tests import support
from tests.conftest import create_bucket
from tests.integration.collections_config import acl, collection


def run_cli(*args, env=None, home=None, timeout=30):
    environment = support.base_env(home or support.ROOT)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "backup_repository", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=str(support.ROOT))


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--db-hostname", "--jwt-secret-key", "--storage-url", "--listen", "--config-local-path",
                 "BR_DB_USERNAME", "--encode-password", "--hash-jwt", "--db-path", "--jwt-expiry"):
        assert flag in result.stdout


def test_encode_password_is_go_compatible():
    result = run_cli("--encode-password", "correct horse")
    assert result.returncode == 0
    encoded = result.stdout.strip()
    assert base64.b64decode(encoded).decode().startswith("$argon2id$v=19$m=65536,t=1,p=4$")
    assert verify_password("correct horse", encoded) and not verify_password("wrong", encoded)


def test_hash_jwt():
    result = run_cli("--hash-jwt", "abc.def.ghi")
    assert result.returncode == 0
    assert result.stdout.strip() == hashlib.sha256(b"abc.def.ghi").hexdigest()


def test_missing_jwt_secret_exits_2_saying_how_to_set_it(tmp_path):
    result = run_cli("--listen=127.0.0.1:0", home=tmp_path)
    assert result.returncode == 2
    assert "--jwt-secret-key" in result.stderr and "BR_JWT_SECRET_KEY" in result.stderr


def test_an_unreachable_kubernetes_api_server_stops_the_start_with_one_line(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{support.free_port()}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: backups}}}}]
current-context: x
""")
    result = run_cli("--provider=kubernetes", f"--kubeconfig={kubeconfig}", "--kube-start-timeout=10s",
                     "--jwt-secret-key=x", "--listen=127.0.0.1:0", f"--db-path={tmp_path / 'm.db'}", home=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "cannot start: the API server cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, env, fragment", [
    (["--storage-io-timeout=5x"], {}, "invalid value '5x' for --storage-io-timeout"),
    (["--log-level=chatty"], {}, "invalid value 'chatty' for --log-level"),
    (["--listen=:70000"], {}, "invalid value ':70000' for --listen"),
    ([], {"BR_DB_PORT": "0"}, "invalid value '0' for --db-port (from BR_DB_PORT)"),
])
def test_invalid_values_exit_2(args, env, fragment):
    result = run_cli(*args, env=env)
    assert result.returncode == 2 and fragment in result.stderr


def test_unreachable_dependencies_exit_1_saying_what_to_check(tmp_path, config):
    port = support.free_port()
    result = run_cli("--jwt-secret-key=x", "--listen=127.0.0.1:0", f"--config-local-path={config.root}",
                     "--db-hostname=127.0.0.1", f"--db-port={port}", "--db-user=nobody", "--db-name=nothing",
                     home=tmp_path)
    assert result.returncode == 1
    assert "cannot connect to the PostgreSQL" in result.stderr and "check --db-hostname" in result.stderr

    result = run_cli("--jwt-secret-key=x", "--listen=127.0.0.1:0", f"--config-local-path={config.root}",
                     f"--db-path={tmp_path / 'm.db'}", f"--storage-url=file://{tmp_path / 'missing'}",
                     home=tmp_path)
    assert result.returncode == 1 and "does not exist" in result.stderr and "--storage-url" in result.stderr

    result = run_cli("--jwt-secret-key=x", "--listen=127.0.0.1:0", f"--config-local-path={config.root}",
                     f"--db-path={tmp_path / 'm.db'}",
                     f"--storage-url=s3://bucket?endpoint=127.0.0.1:{port}&disableSSL=true&region=eu-central-1",
                     home=tmp_path, env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert result.returncode == 1 and "cannot reach s3://bucket" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_contracts_typical_command_line_serves(tmp_path, config, minio_server, pg_dsn):
    """The contract's command line, flag for flag, with this machine's PostgreSQL and S3 server (MinIO) filled in."""
    params = support.create_pg_database(pg_dsn)
    s3_server = minio_server.endpoint
    bucket = create_bucket(s3_server)
    args = [
        f"--db-hostname={params['host']}", f"--db-port={params['port']}", f"--db-user={params['user']}",
        f"--db-password={params['password']}", f"--db-name={params['dbname']}", "--health-check-key=changeme",
        "--jwt-secret-key=secret key", "--storage-io-timeout=5m", "--listen=127.0.0.1:0", "--provider=filesystem",
        f"--config-local-path={config.root}",
        f"--storage-url=s3://{bucket}?endpoint={s3_server}&disableSSL=true&s3ForcePathStyle=true"
        "&region=eu-central-1",
    ]
    env = support.base_env(tmp_path)
    env.update(AWS_ACCESS_KEY_ID=support.S3_KEY, AWS_SECRET_ACCESS_KEY=support.S3_SECRET)
    server = support.Server(args, env, tmp_path / "server.log").start()
    try:
        assert server.get("/ready?code=changeme").status_code == 200
        assert server.login("admin", "admin")
    finally:
        server.stop()
        support.drop_pg_database(pg_dsn, params["dbname"])


def test_everything_from_br_variables_and_space_separated_flags(tmp_path, config):
    """BR_* variables alone configure the server; ``--flag value`` works like ``--flag=value``."""
    env = support.base_env(tmp_path)
    env.update(BR_JWT_SECRET_KEY="from-env", BR_HEALTH_CHECK_KEY="env-code", BR_CONFIG_PROVIDER="filesystem",
               BR_CONFIG_LOCAL_PATH=str(config.root), BR_DB_PATH=str(tmp_path / "m.db"),
               BR_STORAGE_DRIVER_URL=f"file://{tmp_path}", BR_LOG_LEVEL="info")
    server = support.Server(["--listen", "127.0.0.1:0", "--namespace", "backup-repository"], env,
                            tmp_path / "server.log").start()
    try:
        assert server.get("/ready", headers={"Authorization": "env-code"}).status_code == 200
        assert server.login("admin", "admin")
        assert os.path.exists(tmp_path / "m.db")
    finally:
        server.stop()


def test_embedded_defaults_need_nothing_but_a_secret(tmp_path, config):
    """No database, no storage flags: SQLite and a storage directory under ~/.backup-repository."""
    env = support.base_env(tmp_path)
    server = support.Server(["--listen=127.0.0.1:0", "--jwt-secret-key=x", f"--config-local-path={config.root}"],
                            env, tmp_path / "server.log").start()
    try:
        assert server.login("admin", "admin")
        assert (tmp_path / ".backup-repository" / "data" / "metadata.sqlite3").exists()
        assert (tmp_path / ".backup-repository" / "data" / "storage").is_dir()
    finally:
        server.stop()
    assert server.proc.returncode == 0


def test_validate_config(tmp_path, config):
    assert run_cli("--validate-config", f"--config-local-path={config.root}").returncode == 0
    config.write(support.USERS, "broken", "kind: BackupUser\nspec: [\n")
    config.write(support.COLLECTIONS, "bad", collection("bad", max_count=2, extra="""  windows:
    - from: "0 1 * * *"
      duration: 2 hours
"""))
    config.write(support.COLLECTIONS, "stranger", collection("stranger", max_count=2,
                                                            extra=acl(("ghost", ["backupUploader"]))))
    result = run_cli("--validate-config", f"--config-local-path={config.root}")
    lines = result.stdout.splitlines()
    assert result.returncode == 1 and len(lines) == 3, result.stdout
    assert any("broken.yaml" in line and "not valid YAML" in line for line in lines)
    assert any("bad.yaml: spec.windows[0].duration:" in line for line in lines)
    assert any("stranger.yaml: spec.accessControl[0]:" in line and "ghost" in line for line in lines)


#: The Go server's example configuration directory (docs/examples-filesystem/backup-repository of
#: riotkit-org/backup-repository), as a migrating user brings it: its admin has restrictByIP: [1.2.3.4].
GO_EXAMPLE_ADMIN = """---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: admin
spec:
    email: riotkit@riseup.net
    deactivated: false
    organization: "Riotkit"
    about: "System administrator"
    password: "hashed"
    passwordFromRef:  # alternatively, fetch from `kind: Secret`
        name: backup-repository-passwords
        entry: admin
    restrictByIP:
        - 1.2.3.4
    roles:
        - collectionManager
        - usersManager
        - systemAdmin
"""
GO_EXAMPLE_COLLECTION = support.go_example_collection("iwa-ait", namespace="backup-repository")


def secret_document(name: str, **entries) -> str:
    data = "".join(f'\n    {key}: "{value}"' for key, value in entries.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: {name}\ntype: Opaque\ndata:{data}\n"


def test_validate_config_warns_that_the_go_examples_admin_is_locked_to_1_2_3_4(tmp_path):
    """The Go server's own example passes with one warning, exit 0: its admin may log in only from 1.2.3.4 now."""
    config = support.ConfigDir(tmp_path / "config", copy_examples=False)
    admin = config.write(support.USERS, "admin", GO_EXAMPLE_ADMIN)
    config.write(support.COLLECTIONS, "iwa-ait", GO_EXAMPLE_COLLECTION)
    config.write(support.SECRETS, "backup-repository-passwords", secret_document(
        "backup-repository-passwords", admin=support.GO_ADMIN_HASH))
    config.write(support.SECRETS, "backup-repository-collection-secrets", secret_document(
        "backup-repository-collection-secrets", **{"iwa-ait": hashlib.sha256(b"admin").hexdigest()}))
    result = run_cli("--validate-config", f"--config-local-path={config.root}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"warning: {admin}: spec.restrictByIP: user 'admin' may log in and use its tokens only from 1.2.3.4; "
        "from any other address the login is refused with 401 'incorrect Username or Password' and its tokens get "
        "401. The Go server ignored restrictByIP and let it in from anywhere. List every address or network the "
        "user connects from, as this server sees it (behind a reverse proxy, name the proxy in --trusted-proxies), "
        "or remove restrictByIP"]
    assert "1 users, 1 collections, 0 problems, 1 warnings" in result.stderr


def test_validate_config_warnings_leave_the_exit_status_to_problems(tmp_path):
    """A deactivated user, health code entries that no code can match: warnings, exit 0; a problem next to them
    still makes it 1, and the warnings are printed all the same."""
    config = support.ConfigDir(tmp_path / "config", copy_examples=False)
    config.user("admin", support.GO_ADMIN_HASH, roles=["systemAdmin"])
    gone = config.user("gone", support.GO_ADMIN_HASH, extra="  deactivated: true\n")
    config.write(support.SECRETS, "health", secret_document(
        "health", empty="", plain="the-code", good=hashlib.sha256(b"the-code").hexdigest().upper()))
    paths = {name: config.write(support.COLLECTIONS, name, collection(name, extra=f"""  healthSecretRef:
    name: health
    entry: {name}
""")) for name in ("empty", "plain", "good")}
    result = run_cli("--validate-config", f"--config-local-path={config.root}")
    assert result.returncode == 0, result.stdout + result.stderr
    health_hint = ("no code can match it, so every request to the collection health endpoint is refused with "
                   "403; put the sha256 hex of the health code in it (echo -n 'the code' | sha256sum), not the code "
                   "itself")
    warnings = [
        f"warning: {gone}: spec.deactivated: user 'gone' is deactivated: its logins (password and access keys) are "
        "refused with 401 'incorrect Username or Password' and its tokens get 401; the Go server ignored deactivated "
        "and let it in. Remove deactivated (or set it to false) if this user must keep working",
        f"warning: {paths['empty']}: spec.healthSecretRef: entry 'empty' of secret 'health' is empty: {health_hint}",
        f"warning: {paths['plain']}: spec.healthSecretRef: entry 'plain' of secret 'health' is not a sha256 hex "
        f"digest (64 characters 0-9, a-f): {health_hint}",
    ]
    assert result.stdout.splitlines() == warnings
    assert "2 users, 3 collections, 0 problems, 3 warnings" in result.stderr

    config.write(support.COLLECTIONS, "bad", collection("bad", max_count=2, one="1M", total="1M"))
    result = run_cli("--validate-config", f"--config-local-path={config.root}")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[1:] == warnings and "bad.yaml: spec.maxCollectionSize:" in lines[0], result.stdout


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_database_of_the_go_server_is_refused_not_mixed(db, tmp_path, config, make_backend):
    """Pointed at a database holding the Go server's tables, the server exits 1 saying so (no traceback)."""
    backend = make_backend(db, "local")
    create = ("CREATE TABLE granted_accesses (id TEXT PRIMARY KEY)", "CREATE TABLE uploaded_versions (id TEXT)")
    if db == "sqlite":
        import sqlite3

        with sqlite3.connect(backend.db_path) as connection:
            for statement in create:
                connection.execute(statement)
    else:
        import psycopg2

        connection = psycopg2.connect(**backend.db_params)
        connection.autocommit = True
        with connection.cursor() as cursor:
            for statement in create:
                cursor.execute(statement)
        connection.close()
    result = run_cli("--jwt-secret-key=x", "--listen=127.0.0.1:0", f"--config-local-path={config.root}",
                     *backend.args, home=tmp_path)
    assert result.returncode == 1
    assert "already holds tables named granted_accesses, uploaded_versions" in result.stderr
    assert "Traceback" not in result.stderr
