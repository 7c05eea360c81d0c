"""Upload and download throughput of the server against nginx, and the server's memory, on loopback.

    make bench              # or: python benchmarks/bench.py [--size-mib 512] [--runs 3] [--only download,...]

Starts, in a temporary work directory, ``python -m backup_repository`` (or the executable named by ``--server``)
with SQLite and a local storage directory, and a private nginx (Debian's nginx-extras, /usr/sbin/nginx) whose
WebDAV ``PUT`` is the reference for uploads and a plain ``GET`` of the stored file the reference for downloads
(its own nginx.conf: ``worker_processes auto``, ``sendfile on``, ``tcp_nopush on``, ``access_log off``,
``client_max_body_size 0``, ``dav_methods PUT``, the client body temporary files on the same filesystem as the
root, so that a PUT ends with a rename). Both are driven by the same curl commands, one row after the other:

    armored-cl                 an ASCII-armored body (as ``gpg --armor`` writes it), Content-Length (curl -T file)
    armored-chunked            the same, chunked from a pipe (cat file | curl -T -, Transfer-Encoding: chunked)
    binary-cl                  a binary body, Content-Length
    binary-chunked             the binary body, chunked from a pipe
    download                   the download of the stored binary body (curl -o /dev/null)
    parallel-armored-cl        8 parallel armored uploads, Content-Length, to 8 collections (nginx: 8 paths)
    parallel-armored-chunked   the same 8, chunked from 8 pipes
    parallel-binary-cl         8 parallel binary uploads, Content-Length
    parallel-download          8 parallel downloads of the 8 stored binary bodies

The large body is ``--size-mib`` (512) MiB of binary data, the parallel ones ``--parallel-mib`` (64) MiB each;
armored, a body is a third larger on the wire. Bodies are OpenPGP messages shaped like gpg's output (a
public-key encrypted session key, then an integrity-protected data packet in 1 MiB partial body lengths of random
data), which the server's structural check walks while they stream. The body a download row reads is uploaded
first (not timed) when the rows before did not leave it in place.

Each row runs ``--runs`` (3) times per server, alternating between the two servers (ours first on even runs,
nginx first on odd ones), so that both meet the same disk and page cache; before each timed transfer the page
cache is written back (``sync``), so that no server pays for the other's writeback. MB/s is 10^6 bytes of body
(the file sizes, what goes on the wire) per second of wall time, from starting curl to its exit: for our server
after the object is fsync'ed and renamed and the version registered; nginx does not fsync. For each row: the
median and the best of each server, the ratio of the medians (ours / nginx, rounded down), and the peak of our
server's resident memory (VmRSS of /proc/PID/status sampled every 50 ms during the transfers, rounded up; VmHWM
would include the argon2 hash of the login), against these targets; and under it, each server's CPU seconds per
GB of body (utime + stime from /proc: our process with its threads, nginx's master with its workers) and how busy
the machine's CPUs were during the transfers (/proc/stat, the curl clients included): when both servers keep the
machine near 100%, the row is CPU-bound, and the ratio follows the CPU each spends per byte.

    ratio >= 0.8 for armored uploads (decoding the armor costs CPU nginx does not spend), >= 1.0 for binary
    uploads and downloads, >= 1.0 for every 8-parallel row; peak RSS <= 64 MiB for one stream, <= 100 MiB for 8.

A summary of the rows below target ends the output; ``--json FILE`` writes every row (each run's MB/s of both
servers, medians, best, ratio, RSS, targets). Every upload is checked: our server must answer 200 with the
version's JSON and the body's size, nginx 201 or 204 with a file of the body's size; a download must be 200 with
the whole object. Our server runs with ``--rate-default-limit=1000`` (the default of 5 requests per second per
address would refuse 8 parallel downloads). Run it on an otherwise idle machine: alternating makes both servers
meet the same disturbance, but other work on the same CPUs or disk still moves every figure.

``--storage s3`` measures the same against an S3 store: a MinIO (the test tools' binary, built by
scripts/build-test-tools.sh when missing) on loopback serves our server's bucket (``s3://...``), and the reference
is a direct transfer to the same MinIO with MinIO's own client, ``mc`` (``mc cp`` of the file, ``mc cat`` of the
object; built by ``scripts/build-test-tools.sh --with-mc`` when missing), as a user would do without our server.
curl's own SigV4 signing (``curl --aws-sigv4``: one PUT of the file, one GET of the object, the same client program
as for our server) runs too and is shown beside it: a stricter mark, since it does the least any client can.
Rows: binary-cl, download, parallel-binary-cl and parallel-download (an armored body is stored decoded: no S3
reference transfers the same bytes), ratio >= 0.8 each to mc; peak RSS <= 96 MiB for one upload (whole 5 MiB
parts: see S3_ROWS), 192 MiB for 8, 64 and 100 MiB for downloads.

``--metrics on`` starts our server with ``--metrics-listen`` and scrapes /metrics every second while the rows run
(a tenfold busier Prometheus than usual); ``off`` (the default) starts it without metrics.

``--profile DIR`` records our server with py-spy (``py-spy record --nonblocking --threads --idle --rate 200 --format
speedscope``; py-spy from PATH or the venv, ``.venv/bin/pip install py-spy``) during each of its timed runs, and
writes per row ``DIR/ROW.speedscope.json`` (every run, each thread a profile: open it at https://speedscope.app)
and ``DIR/ROW.collapsed.txt`` (collapsed stacks of all runs, the format of py-spy's ``--format raw``, which
flamegraph.pl or inferno-flamegraph turn into an SVG). py-spy samples without stopping the server
(``--nonblocking``), but it takes CPU of its own: profiled figures are lower than unprofiled ones.
"""

import argparse
import grp
import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
GO_ADMIN_HASH = (
    "JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JHpuVy9IT2Y4Q3RkdStvNSttYlR2REE9PSRaZlVpRGl2QWV2T2RZNndKYWJBb0FQ"
    "dmM1a1hsemxDNkg2OFY2dGVmNUY0PQ=="
)
MIB = 1 << 20
PARALLEL = 8
NGINX_PACKAGE = "nginx-extras"


@dataclass(frozen=True)
class Row:
    name: str  # for --only and the JSON
    kind: str  # "upload" or "download"
    body: str  # "armored" or "binary"
    chunked: bool
    parallel: bool
    ratio_target: float  # ours / nginx, medians
    rss_limit_mib: float  # peak RSS of our server


ROWS = (
    Row("armored-cl", "upload", "armored", False, False, 0.8, 64),
    Row("armored-chunked", "upload", "armored", True, False, 0.8, 64),
    Row("binary-cl", "upload", "binary", False, False, 1.0, 64),
    Row("binary-chunked", "upload", "binary", True, False, 1.0, 64),
    Row("download", "download", "binary", False, False, 1.0, 64),
    Row("parallel-armored-cl", "upload", "armored", False, True, 1.0, 100),
    Row("parallel-armored-chunked", "upload", "armored", True, True, 1.0, 100),
    Row("parallel-binary-cl", "upload", "binary", False, True, 1.0, 100),
    Row("parallel-download", "download", "binary", False, True, 1.0, 100),
)

#: --storage s3: the rows whose reference transfers the same bytes (an armored body is stored decoded). An upload to
#: S3 holds whole parts of 5 MiB, S3's least: the part being filled and up to three in flight (storage/cloud.py), so
#: one stream may take 32 MiB above an idle server of about 57 MiB, and eight take 8 x 10 MiB plus 4 shared extra
#: parts and their 2 MiB channels: the limits say so.
S3_ROWS = (
    Row("binary-cl", "upload", "binary", False, False, 0.8, 96),
    Row("download", "download", "binary", False, False, 0.8, 64),
    Row("parallel-binary-cl", "upload", "binary", False, True, 0.8, 192),
    Row("parallel-download", "download", "binary", False, True, 0.8, 100),
)


def write_config(root: Path, collections: int):
    ns = root / "backup-repository"
    users = ns / "backups.riotkit.org/v1alpha1/backupusers"
    colls = ns / "backups.riotkit.org/v1alpha1/backupcollections"
    users.mkdir(parents=True)
    colls.mkdir(parents=True)
    (users / "bench.yaml").write_text(f"""apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
  name: bench
spec:
  email: bench@example.org
  password: "{GO_ADMIN_HASH}"
  roles: [systemAdmin]
""")
    for index in range(collections):
        (colls / f"bench{index}.yaml").write_text(f"""apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
  name: bench{index}
spec:
  filenameTemplate: bench-${{version}}.gpg
  maxBackupsCount: 1
  maxOneVersionSize: 8G
  maxCollectionSize: 8G
""")


def make_body(path: Path, size: int):
    """A binary OpenPGP message of exactly ``size`` bytes, shaped like gpg's output: a public-key encrypted session
    key packet, then an integrity-protected data packet streamed in 1 MiB partial body lengths (random content, so
    nothing compresses). The server walks this structure while it streams, as it does for a real backup."""
    pkesk = bytes([0xC1, 13]) + b"\x03" + bytes(8) + b"\x01" + b"\x00\x01\x01"
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        handle.write(pkesk + bytes([0xD2]))  # SEIPD, new format; its body follows in chunks
        remaining = size - len(pkesk) - 1
        first = True
        while remaining > MIB + 1:  # a partial chunk: one length octet (2^20 octets), then the octets
            handle.write(bytes([0xE0 + 20]))
            handle.write((b"\x01" + block[1:]) if first else block)
            remaining -= MIB + 1
            first = False
        tail = remaining - 5  # the last chunk: a 5-octet definite length, then the rest
        handle.write(b"\xff" + tail.to_bytes(4, "big"))
        handle.write((b"\x01" + block[1:tail]) if first else block[:tail])


def armor_body(binary: Path, path: Path):
    """ASCII-armor ``binary`` into ``path`` as gpg --armor does: 64-character base64 lines and the CRC-24 line."""
    import base64

    sys.path.insert(0, str(ROOT))
    from backup_repository.domain.openpgp import crc24

    crc = 0xB704CE
    with open(binary, "rb") as source, open(path, "wb") as handle:
        handle.write(b"-----BEGIN PGP MESSAGE-----\n\n")
        while True:
            block = source.read(48 * 21845)  # whole 64-character lines
            if not block:
                break
            crc = crc24(block, crc)
            text = base64.b64encode(block)
            handle.write(b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64)))
        handle.write(b"=" + base64.b64encode(crc.to_bytes(3, "big")) + b"\n-----END PGP MESSAGE-----\n")


class RssSampler:
    """VmRSS of a process every 50 ms, in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(self.rss_mib())
            time.sleep(self.interval)

    def __enter__(self):
        self.before = self.rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append(self.rss_mib())

    @property
    def peak(self) -> float:
        return max(self.samples)


class Scraper:
    """GET /metrics every ``interval`` seconds while the benchmark runs, as Prometheus would."""

    def __init__(self, url: str, interval: float = 1.0):
        self.url, self.interval, self.scrapes, self.failures = url, interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            answer = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", self.url],
                                    capture_output=True)
            if answer.stdout == b"200":
                self.scrapes += 1
            else:
                self.failures += 1

    def close(self):
        self._stop.set()
        self._thread.join()


class Bench:
    """Our server, started with SQLite and local storage in ``work``, logged in as a systemAdmin."""

    label = "ours"

    def __init__(self, server_cmd, work: Path, metrics: bool = False, started=None, storage_url: str = None,
                 env: dict = None):
        """``started(self)`` is called once the process runs, so that the caller stops it even if starting
        fails later; ``storage_url`` (default: a directory in ``work``) and ``env`` for an S3 store."""
        self.work = work
        self.stored = {}  # slot -> the body its collection holds
        work.mkdir()
        write_config(work / "config", PARALLEL)
        (work / "storage").mkdir()
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "wb")
        self.scraper = None
        self.proc = None
        metrics_port = free_port() if metrics else None
        self.proc = subprocess.Popen(
            [*server_cmd, "--listen=127.0.0.1:0", "--jwt-secret-key=benchmark-secret-key-benchmark-secret-key",
             f"--config-local-path={work / 'config'}", f"--db-path={work / 'metadata.sqlite3'}",
             f"--storage-url={storage_url or 'file://' + str(work / 'storage')}", "--log-level=warning",
             "--rate-default-limit=1000",
             *([f"--metrics-listen=127.0.0.1:{metrics_port}"] if metrics else [])],
            stdout=subprocess.PIPE, stderr=self.log, cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        if started:
            started(self)
        self.pid = self.proc.pid
        for _ in range(200):
            line = self.proc.stdout.readline().decode()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
            if not line and self.proc.poll() is not None:
                break
        else:
            match = None
        if not match:
            raise SystemExit(f"our server did not start:\n{tail(self.log_path)}")
        answer = subprocess.run(["curl", "-sS", "-X", "POST", "-d", json.dumps({"username": "bench",
                                 "password": "admin"}), f"{self.url}/api/stable/auth/login"],
                                capture_output=True, check=True).stdout
        self.token = json.loads(answer)["data"]["token"]
        if metrics:
            self.scraper = Scraper(f"http://127.0.0.1:{metrics_port}/metrics")

    def close(self):
        if self.scraper:
            self.scraper.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def cpu_pid(self) -> int:
        return self.proc.pid

    def _url(self, slot: int, suffix: str = "") -> str:
        return f"{self.url}/api/stable/repository/collection/bench{slot}/version{suffix}"

    def upload_args(self, slot: int) -> list:
        return ["-X", "POST", "-H", f"Authorization: Bearer {self.token}", self._url(slot)]

    def download_args(self, slot: int) -> list:
        return ["-H", f"Authorization: Bearer {self.token}", self._url(slot, "/latest")]

    def check_upload(self, slot: int, code: str, answer: bytes, size: int) -> Optional[str]:
        if code != "200":
            return f"HTTP {code} {answer[:300].decode(errors='replace')}"
        try:
            stored = json.loads(answer)["data"]["version"]["filesize"]
        except (ValueError, KeyError, TypeError):
            return f"HTTP 200 without the version's JSON: {answer[:300]!r}"
        return None if stored == size else f"stored {stored} bytes of {size}"

    def logs(self) -> str:
        self.log.flush()
        return tail(self.log_path)


class Nginx:
    """A private nginx in ``work``: WebDAV PUT into ``work/nginx-root``, GET of what is stored there."""

    label = "nginx"

    def __init__(self, executable: str, work: Path, started=None):
        self.work = work
        self.stored = {}
        self.pid = None
        self.root = work / "nginx-root"
        self.proc = None
        for directory in (work, self.root, work / "nginx-tmp"):
            directory.mkdir()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.error_log = work / "error.log"
        user = ""
        if os.geteuid() == 0:  # workers would run as nobody and could not write into the 0700 work directory
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
        temp = "\n".join(f"    {name}_temp_path {work / ('nginx-' + name)};"
                         for name in ("proxy", "fastcgi", "uwsgi", "scgi"))
        conf = work / "nginx.conf"
        conf.write_text(f"""{user}daemon off;
worker_processes auto;
pid {work / 'nginx.pid'};
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    client_max_body_size 0;
    default_type application/octet-stream;
    client_body_temp_path {work / 'nginx-tmp'};
{temp}
    server {{
        listen 127.0.0.1:{port};
        root {self.root};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
""")
        self.output = open(work / "nginx.out", "wb")
        self.proc = subprocess.Popen([executable, "-p", str(work), "-c", str(conf), "-e", str(self.error_log)],
                                     stdout=self.output, stderr=subprocess.STDOUT)
        if started:
            started(self)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx did not start (exit {self.proc.returncode}):\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"nginx does not answer on port {port}:\n{self.logs()}")
                time.sleep(0.05)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGQUIT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.output.close()

    def cpu_pid(self) -> int:
        """The master: its workers are counted with it."""
        return self.proc.pid

    def _path(self, slot: int) -> str:
        return f"/bench{slot}/backup.gpg"

    def upload_args(self, slot: int) -> list:
        return [self.url + self._path(slot)]  # curl -T: PUT

    def download_args(self, slot: int) -> list:
        return [self.url + self._path(slot)]

    def check_upload(self, slot: int, code: str, answer: bytes, size: int) -> Optional[str]:
        if code not in ("201", "204"):
            return f"HTTP {code} {answer[:300].decode(errors='replace')}"
        stored = (self.root / self._path(slot).lstrip("/")).stat().st_size
        return None if stored == size else f"stored {stored} bytes of {size}"

    def logs(self) -> str:
        return tail(self.error_log) + tail(self.work / "nginx.out")


class MinioStore:
    """A MinIO on loopback for --storage s3 (tests/minio.py starts it), with a bucket per client."""

    label = "minio"

    def __init__(self, work: Path):
        sys.path.insert(0, str(ROOT))
        from tests import minio, support

        binary = minio.find_minio()
        if binary is None:
            subprocess.run(["bash", str(ROOT / "scripts" / "build-test-tools.sh")], check=True)
            binary = minio.find_minio()
        work.mkdir()
        self.server = minio.MinioServer(work, binary)
        self.key, self.secret, self.region = support.S3_KEY, support.S3_SECRET, minio.REGION
        self._support = support
        self.server.start()
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        self.credentials = {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def bucket(self, name: str) -> str:
        bucket = f"bench-{name}"
        self._support.s3_client(self.endpoint).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})
        return bucket

    def url_for(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}&disableSSL=true&s3ForcePathStyle=true&region={self.region}"

    def object_size(self, bucket: str, key: str) -> int:
        return self._support.s3_client(self.endpoint).head_object(Bucket=bucket, Key=key)["ContentLength"]

    def close(self):
        self.server.stop()


class S3Direct:
    """The reference of --storage s3: curl's own SigV4 PUT and GET of an object in a bucket of the same MinIO."""

    label = "s3-direct"

    def __init__(self, store: MinioStore, started=None):
        self.store = store
        self.stored = {}
        self.pid = None  # MinIO's RSS is not ours: not sampled
        self.bucket = store.bucket("direct")
        if started:
            started(self)

    def close(self):
        pass

    def cpu_pid(self) -> int:
        return self.store.server.proc.pid

    def _args(self, slot: int) -> list:
        return ["--aws-sigv4", f"aws:amz:{self.store.region}:s3", "--user", f"{self.store.key}:{self.store.secret}",
                "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                f"http://{self.store.endpoint}/{self.bucket}/bench{slot}/backup.gpg"]

    def upload_args(self, slot: int) -> list:
        return self._args(slot)  # curl -T: PUT

    def download_args(self, slot: int) -> list:
        return self._args(slot)

    def check_upload(self, slot: int, code: str, answer: bytes, size: int) -> Optional[str]:
        if code != "200":
            return f"HTTP {code} {answer[:300].decode(errors='replace')}"
        stored = self.store.object_size(self.bucket, f"bench{slot}/backup.gpg")
        return None if stored == size else f"stored {stored} bytes of {size}"

    def logs(self) -> str:
        return tail(Path(self.store.server.workdir) / "minio.log")


class McDirect:
    """The reference of --storage s3: MinIO's own client (``mc cp`` of the file, ``mc cat`` of the object) to a
    bucket of the same MinIO, as a user would transfer without our server."""

    label = "mc"

    def __init__(self, store: MinioStore, work: Path, started=None):
        self.store = store
        self.stored = {}
        self.pid = None  # MinIO's RSS is not ours: not sampled
        self.program = find_mc()
        self.bucket = store.bucket("mc")
        work.mkdir()
        self.env = {**os.environ, "MC_CONFIG_DIR": str(work),
                    "MC_HOST_bench": f"http://{store.key}:{store.secret}@{store.endpoint}"}
        answer = subprocess.run([self.program, "--version"], capture_output=True, text=True, env=self.env)
        self.version = answer.stdout.split("\n")[0]
        if started:
            started(self)

    def close(self):
        pass

    def cpu_pid(self) -> int:
        return self.store.server.proc.pid

    def _target(self, slot: int) -> str:
        return f"bench/{self.bucket}/bench{slot}/backup.gpg"

    def start(self, kind: str, slot: int, body: Optional[Path], chunked: bool):
        """(process, feeder, answer): mc instead of curl; stdout says nothing the check needs."""
        if kind == "download":
            command = [self.program, "--quiet", "cat", self._target(slot)]
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env), None, None
        if chunked:
            feeder = subprocess.Popen(["cat", str(body)], stdout=subprocess.PIPE)
            process = subprocess.Popen([self.program, "--quiet", "pipe", self._target(slot)], stdin=feeder.stdout,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
            feeder.stdout.close()
            return process, feeder, None
        process = subprocess.Popen([self.program, "--quiet", "cp", str(body), self._target(slot)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        return process, None, None

    def outcome(self, kind: str, slot: int, process, out: bytes, size: int) -> Optional[str]:
        if process.returncode != 0:
            return f"mc exited with {process.returncode}"
        stored = self.store.object_size(self.bucket, f"bench{slot}/backup.gpg")
        return None if stored == size else f"the object holds {stored} bytes of {size}"

    def logs(self) -> str:
        return tail(Path(self.store.server.workdir) / "minio.log")


def find_mc() -> str:
    """The mc of the test tools' cache, built by scripts/build-test-tools.sh --with-mc when missing."""
    sys.path.insert(0, str(ROOT))
    from tests import minio

    program = Path(minio.find_minio() or "").with_name("mc")
    if not os.access(program, os.X_OK):
        subprocess.run(["bash", str(ROOT / "scripts" / "build-test-tools.sh"), "--with-mc"], check=True)
        program = Path(minio.find_minio()).with_name("mc")
    return str(program)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root``, its threads and its descendants (nginx's workers), from /proc."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    total, wanted = 0.0, {root}
    while wanted:
        pid = wanted.pop()
        if pid in stats:
            total += stats[pid][1]
        wanted |= {child for child, (parent, _) in stats.items() if parent == pid}
    return total


def machine_busy() -> tuple:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_py_spy() -> Optional[str]:
    for candidate in (shutil.which("py-spy"), Path(sys.executable).parent / "py-spy", ROOT / ".venv/bin/py-spy"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class Profiler:
    """py-spy on our server during each timed run of a row; per row, one speedscope file and one collapsed-stack
    file gathering the runs."""

    def __init__(self, py_spy: str, directory: Path, scratch: Path):
        self.py_spy, self.directory, self.scratch = py_spy, directory, scratch
        directory.mkdir(parents=True, exist_ok=True)
        scratch.mkdir()
        self.runs = {}  # row name -> the speedscope files of its runs
        self.proc = None
        self.written = []

    def start(self, pid: int, row: str):
        path = self.scratch / f"{row}.{len(self.runs.get(row, [])) + 1}.json"
        self.runs.setdefault(row, []).append(path)
        self.proc = subprocess.Popen([self.py_spy, "record", "--nonblocking", "--threads", "--idle", "--rate", "200",
                                      "--format", "speedscope", "--output", str(path), "--pid", str(pid)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = b""
        while b"Sampling process" not in seen:  # attached: the transfer may start
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise SystemExit(f"py-spy did not start:\n{seen.decode(errors='replace')}")
            seen += line

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            print(f"py-spy failed (exit {proc.returncode}): {out.decode(errors='replace')}", file=sys.stderr)

    def write(self, row: str) -> list:
        """Gather the runs of ``row`` into DIR/ROW.speedscope.json and DIR/ROW.collapsed.txt."""
        frames, index, profiles, collapsed = [], {}, [], {}
        for run, path in enumerate(self.runs.get(row, []), 1):
            if not path.exists():
                continue
            data = json.loads(path.read_text())
            shared = data["shared"]["frames"]
            remap = []
            for frame in shared:
                key = (frame.get("name"), frame.get("file"), frame.get("line"))
                if key not in index:
                    index[key] = len(frames)
                    frames.append(frame)
                remap.append(index[key])
            for profile in data["profiles"]:
                samples = [[remap[i] for i in stack] for stack in profile["samples"]]
                profiles.append({**profile, "name": f"run {run}: {profile['name']}", "samples": samples})
                for stack in samples:  # root first (the thread, with --threads), as in py-spy's raw format
                    key = ";".join(f"{frames[i]['name']} ({frames[i]['file']}:{frames[i]['line']})"
                                   if frames[i].get("file") else frames[i]["name"] for i in stack)
                    collapsed[key] = collapsed.get(key, 0) + 1
        if not profiles:
            return []
        speedscope = self.directory / f"{row}.speedscope.json"
        speedscope.write_text(json.dumps({
            "$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": frames},
            "profiles": profiles, "activeProfileIndex": 0, "exporter": "benchmarks/bench.py (py-spy)",
            "name": f"backup-repository: {row}",
        }))
        stacks = self.directory / f"{row}.collapsed.txt"
        stacks.write_text("".join(f"{key} {count}\n" for key, count in sorted(collapsed.items())))
        self.written += [speedscope, stacks]
        return [speedscope, stacks]


class Driver:
    """Runs the curl commands of a row against one server and checks the answers."""

    def __init__(self, work: Path, bodies: dict, profiler: Optional[Profiler]):
        self.work, self.bodies, self.profiler = work, bodies, profiler
        self.answers = work / "answers"
        self.answers.mkdir()

    def body(self, row: Row) -> Path:
        return self.bodies[(row.body, row.parallel)]

    def _start(self, server, kind: str, slot: int, body: Optional[Path], chunked: bool):
        if hasattr(server, "start"):  # a client of its own (mc)
            return server.start(kind, slot, body, chunked)
        answer = self.answers / f"{server.label}-{slot}"
        args = ["curl", "-sS", "-w", "%{http_code} %{size_download}"]
        if kind == "download":
            return subprocess.Popen(args + ["-o", "/dev/null", *server.download_args(slot)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE), None, answer
        args += ["-o", str(answer), "-T", "-" if chunked else str(body), *server.upload_args(slot)]
        if not chunked:
            return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE), None, answer
        cat = subprocess.Popen(["cat", str(body)], stdout=subprocess.PIPE)
        curl = subprocess.Popen(args, stdin=cat.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cat.stdout.close()
        return curl, cat, answer

    def transfer(self, server, kind: str, slots: list, body: Optional[Path], chunked: bool,
                 profile_row: Optional[str] = None) -> dict:
        """Start one curl per slot at once, wait for all; check them; return seconds and RSS."""
        os.sync()  # no server pays for the writeback of what was written before
        sampler = RssSampler(server.pid) if server.pid else None
        if profile_row and self.profiler and server.pid:
            self.profiler.start(server.pid, profile_row)
        try:
            if sampler:
                sampler.__enter__()
            cpu_before, busy_before = tree_cpu_seconds(server.cpu_pid()), machine_busy()
            began = time.perf_counter()
            started = [self._start(server, kind, slot, body, chunked) for slot in slots]
            finished = [(curl.communicate(), cat.wait() if cat else 0) for curl, cat, _ in started]
            elapsed = time.perf_counter() - began
            cpu = tree_cpu_seconds(server.cpu_pid()) - cpu_before
            busy_after = machine_busy()
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
            if self.profiler:
                self.profiler.stop()
        for slot, (process, _, answer), ((out, err), _) in zip(slots, started, finished):
            if hasattr(server, "outcome"):
                size = (body or server.stored[slot]).stat().st_size
                problem = server.outcome(kind, slot, process, out, size)
                if problem is None and kind == "upload":
                    server.stored[slot] = body
                if problem:
                    raise SystemExit(f"{server.label}: {kind} to slot {slot} failed: {problem} "
                                     f"{(err or b'').decode()}\n{server.logs()}")
                continue
            fields = out.decode().split()
            code = fields[0] if fields else "000"
            if kind == "upload":
                problem = server.check_upload(slot, code, answer.read_bytes() if answer.exists() else b"",
                                              body.stat().st_size)
                if problem is None:
                    server.stored[slot] = body
            else:
                want = server.stored[slot].stat().st_size
                got = int(fields[1]) if len(fields) > 1 else -1
                problem = None if code == "200" and got == want else f"HTTP {code}, {got} of {want} bytes"
            if problem:
                raise SystemExit(f"{server.label}: {kind} to slot {slot} failed: {problem} {err.decode()}\n"
                                 f"{server.logs()}")
        result = {"seconds": elapsed, "cpu_seconds": cpu,
                  "machine_busy": (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])}
        if sampler:
            result.update(rss_before_mib=sampler.before, rss_peak_mib=sampler.peak)
        return result

    def measure(self, server, row: Row) -> dict:
        slots = list(range(PARALLEL)) if row.parallel else [0]
        body = self.body(row)
        if row.kind == "download":  # what the row reads must be stored: upload it first, untimed
            missing = [slot for slot in slots if server.stored.get(slot) != body]
            if missing:
                self.transfer(server, "upload", missing, body, False)
            body = None
        return self.transfer(server, row.kind, slots, body, row.chunked, profile_row=row.name)


def title(row: Row, sizes: dict) -> str:
    size = sizes[(row.body, row.parallel)] // MIB
    how = " (chunked, pipe)" if row.chunked else " (Content-Length)" if row.kind == "upload" else ""
    if row.parallel:
        what = f"{row.body} uploads" if row.kind == "upload" else "downloads"
        return f"{PARALLEL} x {size} MiB {what}{how.replace('pipe', 'pipes')}"
    what = f"{row.body} upload" if row.kind == "upload" else "download"
    return f"{what} {size} MiB{how}"


def summarize(row: Row, name: str, wire: int, runs: dict) -> dict:
    result = {"name": row.name, "title": name, "wire_bytes": wire, "ratio_target": row.ratio_target,
              "rss_limit_mib": row.rss_limit_mib}
    for label, measured in runs.items():
        speeds = [wire / run["seconds"] / 1e6 for run in measured]
        result[label] = {"mbs": speeds, "median_mbs": statistics.median(speeds), "best_mbs": max(speeds),
                         "cpu_s_per_gb": statistics.median(run["cpu_seconds"] / (wire / 1e9) for run in measured),
                         "machine_busy": statistics.median(run["machine_busy"] for run in measured)}
    ours, reference = runs["ours"], next(label for label in runs if label != "ours")
    result["reference"] = reference
    result["others"] = [label for label in runs if label not in ("ours", reference)]
    result["ratio"] = result["ours"]["median_mbs"] / result[reference]["median_mbs"]
    result["rss_before_mib"] = ours[0]["rss_before_mib"]
    result["rss_peak_mib"] = max(run["rss_peak_mib"] for run in ours)
    result["ratio_ok"] = result["ratio"] >= row.ratio_target
    result["rss_ok"] = result["rss_peak_mib"] <= row.rss_limit_mib
    return result


def down(value: float, digits: int) -> float:
    """``value`` rounded down (a ratio shown as meeting its target must meet it)."""
    return math.floor(value * 10 ** digits) / 10 ** digits


def up(value: float, digits: int) -> float:
    """``value`` rounded up (a peak shown as within its limit must be)."""
    return math.ceil(value * 10 ** digits) / 10 ** digits


def show(result: dict, width: int):
    label = result["reference"]
    ours, nginx = result["ours"], result[label]
    print(f"{result['title']:<{width}}   ours {ours['median_mbs']:5.0f} MB/s (best {ours['best_mbs']:5.0f})   "
          f"{label} {nginx['median_mbs']:5.0f} MB/s (best {nginx['best_mbs']:5.0f})   {down(result['ratio'], 2):4.2f}x "
          f"(target >= {result['ratio_target']:.2f}: {'ok' if result['ratio_ok'] else 'BELOW'})   "
          f"RSS peak {up(result['rss_peak_mib'], 1):5.1f} MiB (<= {result['rss_limit_mib']:.0f}: "
          f"{'ok' if result['rss_ok'] else 'ABOVE'})", flush=True)
    print(f"{'':<{width}}   server CPU per GB: ours {ours['cpu_s_per_gb']:.2f} s, {label} {nginx['cpu_s_per_gb']:.2f} s; "
          f"machine busy (both CPUs, clients included): {ours['machine_busy'] * 100:.0f}% / "
          f"{nginx['machine_busy'] * 100:.0f}%", flush=True)
    for other in result["others"]:
        theirs = result[other]
        print(f"{'':<{width}}   also {other} {theirs['median_mbs']:5.0f} MB/s (best {theirs['best_mbs']:5.0f}): ours "
              f"{down(ours['median_mbs'] / theirs['median_mbs'], 2):4.2f}x of it; its server CPU per GB "
              f"{theirs['cpu_s_per_gb']:.2f} s", flush=True)


def nginx_version(executable: str) -> str:
    answer = subprocess.run([executable, "-v"], capture_output=True, text=True)
    return (answer.stderr or answer.stdout).strip().replace("nginx version: ", "")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512,
                        help="binary data in the large body, MiB (default 512; armored, a third more on the wire)")
    parser.add_argument("--parallel-mib", type=int, default=64,
                        help="binary data in each of the 8 parallel bodies, MiB (default 64)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each row per server (default 3)")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME]",
                        help="run only these rows: " + ", ".join(row.name for row in ROWS))
    parser.add_argument("--server", default=None, help="our server's executable (default: python -m "
                        "backup_repository)")
    parser.add_argument("--nginx", default=None, help=f"nginx executable (default: nginx on PATH or "
                        f"/usr/sbin/nginx, from Debian's {NGINX_PACKAGE})")
    parser.add_argument("--metrics", choices=("off", "on"), default="off",
                        help="our server without metrics (default), or with /metrics scraped every second")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="record our server with py-spy during its runs: DIR/ROW.speedscope.json and "
                        "DIR/ROW.collapsed.txt per row")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every row to this JSON file")
    parser.add_argument("--storage", choices=("local", "s3"), default="local",
                        help="our server's store: a local directory against nginx (default), or a bucket on MinIO "
                        "against curl's direct transfers to the same MinIO")
    args = parser.parse_args(argv)
    rows = S3_ROWS if args.storage == "s3" else ROWS
    names = {row.name for row in rows}
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in names]
        if unknown or not wanted:
            parser.error(f"--only: unknown row {', '.join(unknown) or '(none given)'}; rows: "
                         f"{', '.join(row.name for row in rows)}")
        args.rows = [row for row in rows if row.name in wanted]
    else:
        args.rows = list(rows)
    if args.runs < 1 or args.size_mib < 2 or args.parallel_mib < 2:
        parser.error("--runs must be at least 1, --size-mib and --parallel-mib at least 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the benchmark (apt-get install curl)")
    nginx = args.nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    if args.storage == "local" and not os.access(nginx, os.X_OK):
        raise SystemExit(f"nginx is needed as the reference: install Debian's {NGINX_PACKAGE} "
                         f"(apt-get install {NGINX_PACKAGE})")
    py_spy = None
    if args.profile:
        py_spy = find_py_spy()
        if not py_spy:
            raise SystemExit("--profile needs py-spy on PATH or in the venv: .venv/bin/pip install py-spy")

    server_cmd = [args.server] if args.server else [sys.executable, "-m", "backup_repository"]
    work = Path(tempfile.mkdtemp(prefix="br-bench-"))
    servers, results, stores = [], [], []
    profiler = None
    try:
        needed = {(row.body, row.parallel) for row in args.rows}
        sizes, bodies = {}, {}
        for parallel, mib in ((False, args.size_mib), (True, args.parallel_mib)):
            binary = work / f"body-{mib}-{'parallel' if parallel else 'single'}.gpg"
            if not any(row.parallel == parallel for row in args.rows):
                continue
            make_body(binary, mib * MIB)  # the armored body is made of it
            bodies[("binary", parallel)] = binary
            if ("armored", parallel) in needed:
                armored = binary.with_suffix(".asc")
                armor_body(binary, armored)
                bodies[("armored", parallel)] = armored
        sizes = {key: path.stat().st_size for key, path in bodies.items()}
        if args.profile:
            profiler = Profiler(py_spy, Path(args.profile).resolve(), work / "profiles")
        if args.storage == "s3":
            minio = MinioStore(work / "minio")
            stores.append(minio)
            ours = Bench(server_cmd, work / "ours", args.metrics == "on", started=servers.append,
                         storage_url=minio.url_for(minio.bucket("ours")), env=minio.credentials)
            mc = McDirect(minio, work / "mc", started=servers.append)  # the reference: ratios are to it
            S3Direct(minio, started=servers.append)
            reference = f"{mc.version} and curl --aws-sigv4, to {minio.version}"
        else:
            ours = Bench(server_cmd, work / "ours", args.metrics == "on", started=servers.append)
            Nginx(nginx, work / "nginx", started=servers.append)
            reference = f"{nginx_version(nginx)} ({nginx})"
        driver = Driver(work, bodies, profiler)

        sized = ", ".join(f"{'8 x ' if parallel else ''}{kind} {size // MIB} MiB"
                          for (kind, parallel), size in sorted(sizes.items(), key=lambda item: item[0][::-1]))
        print(f"bench.py {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs: {sized}; median and best of "
              f"{args.runs} run{'s' if args.runs > 1 else ''} per server, alternating; ours: "
              f"{' '.join(server_cmd)} (metrics {args.metrics}{', profiled by py-spy' if profiler else ''}); "
              f"{reference}", flush=True)
        width = max(len(title(row, sizes)) for row in args.rows)
        for row in args.rows:
            runs = {server.label: [] for server in servers}
            for run in range(args.runs):
                for server in (servers if run % 2 == 0 else servers[::-1]):
                    runs[server.label].append(driver.measure(server, row))
            name = title(row, sizes)
            wire = sizes[(row.body, row.parallel)] * (PARALLEL if row.parallel else 1)
            result = summarize(row, name, wire, runs)
            if profiler:
                result["profile"] = [str(path) for path in profiler.write(row.name)]
            results.append(result)
            show(result, width)

        below = [f"  {r['name']:<26} {down(r['ratio'], 2):.2f}x < {r['ratio_target']:.2f} (ours "
                 f"{r['ours']['median_mbs']:.0f}, {r['reference']} {r[r['reference']]['median_mbs']:.0f} MB/s)"
                 for r in results if not r["ratio_ok"]]
        above = [f"  {r['name']:<26} {up(r['rss_peak_mib'], 1):.1f} MiB > {r['rss_limit_mib']:.0f} MiB"
                 for r in results if not r["rss_ok"]]
        print(f"\nspeed below target: {len(below)} of {len(results)} rows" + "".join("\n" + line for line in below))
        print(f"RSS above limit: {len(above)} of {len(results)} rows" + "".join("\n" + line for line in above))
        if ours.scraper:
            print(f"/metrics scraped {ours.scraper.scrapes} times during the run ({ours.scraper.failures} failed)")
        if profiler and profiler.written:
            print(f"profiles (py-spy, our server during its timed runs): {profiler.directory}/")
            for path in profiler.written:
                print(f"  {path.name}")
    finally:
        if profiler:
            profiler.stop()
        for server in [*servers, *stores]:
            server.close()
        if args.json:
            Path(args.json).write_text(json.dumps({
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(), "runs": args.runs,
                "server": server_cmd, "metrics": args.metrics, "storage": args.storage,
                "reference": nginx if args.storage == "local" else "curl --aws-sigv4 to MinIO",
                "profiled": bool(args.profile),
                "rows": results}, indent=2))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
