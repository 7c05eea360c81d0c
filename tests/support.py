"""Helpers for tests that run the real server: processes, configuration directories, backends.

Nothing here is mocked: a server is ``python -m backup_repository`` in its own process, PostgreSQL is the one named
by ``BR_TEST_PG_DSN`` or a throwaway cluster the session starts (tests/pg_cluster.py), S3 is MinIO on loopback
(tests/minio.py), Azure Blob Storage is Azurite (tests/azurite.py).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
NAMESPACE = "backup-repository"
USERS = Path("backups.riotkit.org/v1alpha1/backupusers")
COLLECTIONS = Path("backups.riotkit.org/v1alpha1/backupcollections")
SECRETS = Path("v1/secrets")
JWT_SECRET = "test-secret-key-that-is-long-enough-for-hs256"
HEALTH_KEY = "health-key-for-tests"
#: The challenge of every 401 answer (docs/api.md#tokens)
CHALLENGE = "JWT realm=backup-repository"
#: The answer of /ready to a wrong or missing code (docs/api.md#health)
READY_CODE_INVALID = ("health code invalid. Should be provided withing 'Authorization' header or 'code' query "
                      "string. Must match --health-check-code commandline switch value")
S3_KEY, S3_SECRET = "test-access-key", "test-secret-key"
#: Azurite's development account (tests/azurite.py): the name and key its documentation publishes
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GO_ADMIN_HASH = (
    "JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JHpuVy9IT2Y4Q3RkdStvNSttYlR2REE9PSRaZlVpRGl2QWV2T2RZNndKYWJBb0FQ"
    "dmM1a1hsemxDNkg2OFY2dGVmNUY0PQ=="
)
PG_HINT = ("no PostgreSQL server binaries (initdb, pg_ctl) found: apt-get install postgresql and the tests start a "
           "throwaway cluster, or set BR_TEST_PG_DSN=postgresql://user:password@127.0.0.1:5432/dbname (a role "
           "allowed to create databases)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ConfigDir:
    """A configuration directory ({root}/{namespace}/...) that tests can edit while a server runs."""

    def __init__(self, root: Path, copy_examples: bool = True):
        self.root = Path(root)
        self.ns = self.root / NAMESPACE
        if copy_examples:
            shutil.copytree(EXAMPLES / NAMESPACE, self.ns)
        else:
            for sub in (USERS, COLLECTIONS, SECRETS):
                (self.ns / sub).mkdir(parents=True, exist_ok=True)

    def write(self, sub: Path, name: str, text: str):
        path = self.ns / sub / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic, like a GitOps checkout
        return path

    def remove(self, sub: Path, name: str):
        (self.ns / sub / f"{name}.yaml").unlink()

    def user(self, name: str, password_hash: str, roles=(), extra: str = ""):
        roles_yaml = "".join(f"\n    - {r}" for r in roles) or " []"
        return self.write(USERS, name, f"""apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
  name: {name}
spec:
  email: {name}@example.org
  password: "{password_hash}"
  roles:{roles_yaml}
{extra}""")


@dataclass
class Backend:
    """Where a server keeps its metadata and blobs: flags and environment for one server process."""

    db: str
    storage: str
    args: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    cleanup: list = field(default_factory=list)
    storage_path: Path = None  # local storage
    bucket: str = ""  # S3 storage
    s3_endpoint: str = ""
    blobs: object = None  # Azure storage: tests.azurite.Blobs of the container
    gcs_endpoint: str = ""  # gcs storage: the emulator's host:port (STORAGE_EMULATOR_HOST)
    db_params: dict = None  # PostgreSQL
    db_path: Path = None  # SQLite

    @property
    def id(self):
        return f"{self.db}-{self.storage}"

    def put_object(self, name: str, data: bytes):
        """Write an object behind the server's back (as another server or an earlier crash would)."""
        if self.storage == "local":
            (self.storage_path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.storage_path / name).write_bytes(data)
        elif self.blobs is not None:
            self.blobs.put(name, data)
        elif self.storage == "gcs":
            gcs_bucket(self.gcs_endpoint, self.bucket).blob(name).upload_from_string(data)
        else:
            s3_client(self.s3_endpoint).put_object(Bucket=self.bucket, Key=name, Body=data)

    def get_object(self, name: str) -> bytes:
        if self.storage == "local":
            return (self.storage_path / name).read_bytes()
        if self.blobs is not None:
            return self.blobs.get(name)
        if self.storage == "gcs":
            return gcs_bucket(self.gcs_endpoint, self.bucket).blob(name).download_as_bytes()
        return s3_client(self.s3_endpoint).get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def delete_object(self, name: str):
        """Delete an object behind the server's back (as an operator's mistake or a failing disk would)."""
        if self.storage == "local":
            (self.storage_path / name).unlink()
        elif self.blobs is not None:
            self.blobs.delete(name)
        elif self.storage == "gcs":
            gcs_bucket(self.gcs_endpoint, self.bucket).blob(name).delete()
        else:
            s3_client(self.s3_endpoint).delete_object(Bucket=self.bucket, Key=name)

    def objects(self) -> list:
        """Every object name in the store, plus ``multipart:<name>`` for each unfinished S3 multipart upload
        (``uncommitted:<name>`` for Azure's blocks staged and never committed; GCS lists no unfinished upload: they
        are invisible)."""
        if self.storage == "local":
            return sorted(str(p.relative_to(self.storage_path)) for p in self.storage_path.rglob("*") if p.is_file())
        if self.blobs is not None:
            return self.blobs.names()
        if self.storage == "gcs":
            return sorted(blob.name for blob in gcs_bucket(self.gcs_endpoint, self.bucket).list_blobs())
        client = s3_client(self.s3_endpoint)
        names = [o["Key"] for o in client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]
        uploads = client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted(names + [f"multipart:{u['Key']}" for u in uploads])


def with_args(backend, replace: dict):
    """The backend's flags and environment with some values replaced (e.g. the database port by a proxy's, the
    GCS emulator's address in STORAGE_EMULATOR_HOST)."""
    def replaced(text):
        for old, new in replace.items():
            text = text.replace(old, new)
        return text

    return Backend(backend.db, backend.storage, args=[replaced(arg) for arg in backend.args],
                   env={name: replaced(value) for name, value in backend.env.items()},
                   storage_path=backend.storage_path, bucket=backend.bucket, s3_endpoint=backend.s3_endpoint,
                   blobs=backend.blobs, gcs_endpoint=backend.gcs_endpoint,
                   db_params=backend.db_params, db_path=backend.db_path)


def gcs_bucket(endpoint: str, name: str):
    from tests.gcs import client

    return client(endpoint).bucket(name)


def s3_client(endpoint: str, key: str = S3_KEY, secret: str = S3_SECRET, region: str = "eu-central-1"):
    import boto3

    return boto3.client("s3", endpoint_url=f"http://{endpoint}", aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name=region)


#: Secrets every test server knows; no server log may contain them (checked when each server stops).
STATIC_SECRETS = {"JWT secret": JWT_SECRET, "health-check key": HEALTH_KEY, "password hash": GO_ADMIN_HASH,
                  "S3 secret key": S3_SECRET, "Azure account key": AZURE_KEY}
#: Servers whose log carried a secret: (log path, what); the session fails at its end when this is not empty.
LEAKS = []


class ApiClient:
    """What every test's client of the API does on top of its own ``request(method, path, token=None, **kwargs)``:
    a server process (``Server``, over requests) or the application in the test's own process (tests/inprocess)."""

    issued_tokens: list

    def get(self, path, token=None, **kwargs):
        return self.request("GET", path, token, **kwargs)

    def login(self, username, password, **extra):
        response = self.request("POST", "/api/stable/auth/login",
                                json={"username": username, "password": password, **extra})
        assert response.status_code == 200, response.text
        token = response.json()["data"]["token"]
        self.issued_tokens.append(token)
        return token


class Server(ApiClient):
    def __init__(self, args, env, log_path: Path, command=None):
        self.args, self.env, self.log_path = args, env, log_path
        self.command = list(command or [sys.executable, "-m", "backup_repository"])
        self.proc = None
        self.url = None
        self.issued_tokens = []

    def start(self, timeout: float = 20.0):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, *self.args],
            stdout=subprocess.PIPE, stderr=self._log, env=self.env, cwd=str(ROOT),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                return self
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"server did not start; log:\n{self.log()}")

    @property
    def json_log(self) -> bool:
        return "--log-format=json" in self.args

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log(self) -> str:
        """The log as text lines, whatever --log-format: a JSON line (each must parse) becomes
        ``time LEVEL logger: message``, so that tests read both formats alike."""
        text = self.raw_log()
        if not self.json_log:
            return text
        lines = []
        for line in text.splitlines():
            if not line.startswith("{"):  # not the server's logging (e.g. an interpreter's last words)
                lines.append(line)
                continue
            entry = json.loads(line)
            lines.append(f"{entry['time']} {entry['level'].upper()} {entry['logger']}: {entry['message']}")
            if "exception" in entry:
                lines.append(entry["exception"])
        return "\n".join(lines) + "\n"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "_log", None):
            self._log.close()
        self.check_log_for_secrets()

    def check_log_for_secrets(self):
        log = self.raw_log() + (self.log() if self.json_log else "")
        secrets = {**STATIC_SECRETS, **{f"token {t[:12]}...": t for t in self.issued_tokens}}
        for what, secret in secrets.items():
            if secret and secret in log:
                LEAKS.append((str(self.log_path), what))

    # --- HTTP helpers ---------------------------------------------------------------------------
    def request(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


def base_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BR_", "AWS_", "AZURE_"))}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def pg_params(dsn: str) -> dict:
    parts = urlsplit(dsn)
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "user": parts.username,
            "password": parts.password or "", "dbname": parts.path.lstrip("/") or parts.username}


def create_pg_database(dsn: str) -> dict:
    """A fresh, empty database for one server; returns its connection parameters."""
    import psycopg2

    admin = pg_params(dsn)
    name = f"br_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return {**admin, "dbname": name}


def drop_pg_database(dsn: str, name: str):
    """Drops a test database, ending the sessions still on it.

    FORCE may only end the sessions of roles this one acts for: an autovacuum worker busy in the database at that
    moment refuses it to a role without pg_signal_backend. Such a worker ends by itself within moments, so the drop
    is tried again rather than failing the test that owned the database.
    """
    import psycopg2

    conn = psycopg2.connect(**pg_params(dsn))
    conn.autocommit = True
    try:
        for attempt in range(40):
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except psycopg2.errors.InsufficientPrivilege:
                if attempt == 39:
                    raise
                time.sleep(0.25)
    finally:
        conn.close()


def pg_flags(params: dict) -> list:
    return [f"--db-hostname={params['host']}", f"--db-port={params['port']}", f"--db-user={params['user']}",
            f"--db-password={params['password']}", f"--db-name={params['dbname']}"]


def assert_error(response, status: int, message: str):
    """The answer is an error in the envelope of docs/api.md: ``code``/``message`` for 401, ``error`` otherwise."""
    assert response.status_code == status, response.text
    if status == 401:
        assert response.json() == {"status": False, "code": 401, "message": message, "data": {}}
    else:
        assert response.json() == {"status": False, "error": message, "data": {}}


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


class Gpg:
    """Real gpg with a throwaway key in its own GNUPGHOME."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = {**os.environ, "GNUPGHOME": str(self.home)}
        self._run("--quick-generate-key", "--passphrase", "", "backups@example.org", "default", "default", "never")

    def _run(self, *args, data: bytes = None) -> bytes:
        result = subprocess.run(["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", *args], input=data,
                                capture_output=True, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"gpg {args[0]} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def encrypt(self, data: bytes, armor: bool = True) -> bytes:
        return self._run("--encrypt", "--recipient", "backups@example.org", "--trust-model", "always",
                         *(["--armor"] if armor else []), data=data)

    def decrypt(self, data: bytes) -> bytes:
        return self._run("--decrypt", data=data)


PGP_OVERHEAD = 26  # see pgp_message: two 6-octet packet headers, a 13-octet PKESK body, the SEIPD version octet


def pgp_message(payload: bytes) -> bytes:
    """A binary OpenPGP message with a valid packet structure around ``payload`` (a dummy PKESK v3 packet, then a
    SEIPD v1 packet holding ``payload``), always the same overhead: len(pgp_message(p)) == len(p) + PGP_OVERHEAD.
    Not encrypted: for tests that need bodies the server accepts without running gpg."""

    def packet(tag: int, body: bytes) -> bytes:  # new format, 5-octet length: the header is always 6 octets
        return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body

    pkesk = b"\x03" + bytes(8) + b"\x01" + b"\x00\x01\x01"  # version 3, key ID, RSA, a 1-bit MPI
    return packet(1, pkesk) + packet(18, b"\x01" + payload)


def read_http_answer(sock, timeout: float = 30.0):
    """(status, body bytes) of the HTTP answer arriving on ``sock`` (the body as long as its Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed without an answer: {data[:200]!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
    length = int(length.group(1)) if length else 0
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return status, body[:length]


class RawUpload:
    """An upload over a plain socket, so that a test controls exactly when body bytes are sent (or not)."""

    def __init__(self, server_url: str, path: str, token: str, length: int = None, chunked: bool = False):
        parts = urlsplit(server_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self.chunked = chunked
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Authorization: Bearer {token}",
                "Content-Type: application/octet-stream"]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())

    def send(self, data: bytes):
        if self.chunked:
            self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.sock.sendall(data)

    def end(self):
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def response(self, timeout: float = 30.0):
        """(status, JSON body) of the response."""
        import json

        status, body = read_http_answer(self.sock, timeout)
        return status, json.loads(body)

    def close(self):
        self.sock.close()


class TcpProxy:
    """A TCP relay on loopback that a test can stop (the service "goes away": new connections are refused and open
    ones are cut) and start again on the same port (the service "is back"); ``pause()`` stalls every byte in both
    directions, and the closing of connections, until ``resume()`` (the service, or the network to it, hangs); ``hold_requests(prefix)`` holds for
    good each request that starts with ``prefix`` (an HTTP method: ``b"DELETE "``) and sets ``held``, and
    ``cut_requests(prefix)`` cuts the connection of each such request instead, counting them in ``cut``."""

    def __init__(self, target_host: str, target_port: int):
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._threading = threading
        self._listener = None
        self._sockets = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._released = threading.Event()  # set by stop(): held requests give up
        self.held = threading.Event()
        self._hold = self._cut = None
        self.cut = 0

    def pause(self):
        self._flowing.clear()

    def resume(self):
        self._flowing.set()

    def hold_requests(self, prefix: bytes = None):
        self._hold = prefix

    def cut_requests(self, prefix: bytes = None):
        self._cut = prefix

    def start(self):
        self._released.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self):
        self._released.set()
        self._flowing.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b, requests_flow in ((client, upstream, True), (upstream, client, False)):
                self._threading.Thread(target=self._pipe, args=(a, b, requests_flow), daemon=True).start()

    def _pipe(self, source, target, requests_flow: bool):
        try:
            while True:
                data = source.recv(65536)
                self._flowing.wait()  # paused: the data, and the end of the connection too, are held
                if not data:
                    break
                if requests_flow and self._hold and data.startswith(self._hold):
                    self.held.set()
                    self._released.wait()
                    break
                if requests_flow and self._cut and data.startswith(self._cut):
                    self.cut += 1
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:  # each socket is the source of one direction: closed once, by that direction
                self._sockets.discard(source)
            source.close()


#: A process that probes GET /health every 50 ms over one kept-alive connection until a line on its stdin, then
#: prints the latencies: probing from a process of its own keeps the test's client threads out of the figures.
HEALTH_PROBER = """
import sys, threading, time, http.client, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
connection.request("GET", "/health"); connection.getresponse().read()  # connected and warm
print("probing", flush=True)
times = []
while not stop.is_set():
    began = time.perf_counter()
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    times.append(time.perf_counter() - began)
    time.sleep(0.05)
print(" ".join(str(t) for t in times))
"""


def go_example_collection(name: str = "iwa-ait", namespace: str = None) -> str:
    """The BackupCollection of the Go server's docs (docs/examples/), unchanged but for its name (and namespace)."""
    where = f"\n    namespace: {namespace}" if namespace else ""
    return f"""---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: {name}{where}
spec:
    description: IWA-AIT website files
    filenameTemplate: iwa-ait-${{version}}.tar.gz
    maxBackupsCount: 5
    maxOneVersionSize: 1M
    maxCollectionSize: 10M
    windows:
        - from: "*/30 * * * *"
          duration: 30m
    strategyName: fifo
    strategySpec:
        keepLastOlderNotMoreThan: 5d
        maxOlderCopies: 2
    healthSecretRef:
        name: backup-repository-collection-secrets
        entry: iwa-ait
    accessControl:
        - userName: admin
          roles:
              - collectionManager
"""
