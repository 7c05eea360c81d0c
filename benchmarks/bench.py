"""Throughput and memory of uploads and downloads, measured against a real server on loopback.

    make bench                       # or: python benchmarks/bench.py [--size-mib 1024] [--runs 3]

Starts ``python -m backup_repository`` (or the executable named by ``--server``) with SQLite and a local storage
directory in a temporary directory, and drives it with curl:

- a 1 GiB upload with Content-Length (``curl -T file``), a 1 GiB chunked upload from a pipe (``cat | curl -T -``),
  and the download of it (``curl -o /dev/null``);
- 8 parallel uploads of 128 MiB to 8 collections.

Bodies are binary OpenPGP messages shaped like gpg's output (``--armor``: ASCII-armored ones, as ``gpg --armor``
writes them), which the server's structural check walks while they stream.

For each: MB/s (10^6 bytes per second of wall time), and the server's resident memory (VmRSS of
/proc/PID/status) sampled every 50 ms while the transfer runs: the peak and the value before it started.
Each measurement runs ``--runs`` times; the best and the median are printed.

``--metrics both`` (the default) starts two servers on the same machine: one without metrics, one with
``--metrics-listen`` scraped every second (a tenfold busier Prometheus than usual) while the transfers run, and
alternates the runs between them, so that both see the same disk and page cache; ``--metrics off`` or ``on`` runs
one of them.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GO_ADMIN_HASH = (
    "JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JHpuVy9IT2Y4Q3RkdStvNSttYlR2REE9PSRaZlVpRGl2QWV2T2RZNndKYWJBb0FQ"
    "dmM1a1hsemxDNkg2OFY2dGVmNUY0PQ=="
)
MIB = 1 << 20
PARALLEL = 8
PARALLEL_MIB = 128


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
  maxOneVersionSize: 4G
  maxCollectionSize: 4G
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
    def __init__(self, server_cmd, work: Path, metrics: bool = False):
        self.work = work
        write_config(work / "config", PARALLEL)
        (work / "storage").mkdir()
        self.log = open(work / "server.log", "wb")
        self.scraper = None
        metrics_port = free_port() if metrics else None
        self.proc = subprocess.Popen(
            [*server_cmd, "--listen=127.0.0.1:0", "--jwt-secret-key=benchmark-secret-key-benchmark-secret-key",
             f"--config-local-path={work / 'config'}", f"--db-path={work / 'metadata.sqlite3'}",
             f"--storage-url=file://{work / 'storage'}", "--log-level=warning",
             *([f"--metrics-listen=127.0.0.1:{metrics_port}"] if metrics else [])],
            stdout=subprocess.PIPE, stderr=self.log, cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(200):
            line = self.proc.stdout.readline().decode()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        else:
            raise SystemExit(f"the server did not start; see {work / 'server.log'}")
        answer = subprocess.run(["curl", "-sS", "-X", "POST", "-d", json.dumps({"username": "bench",
                                 "password": "admin"}), f"{self.url}/api/stable/auth/login"],
                                capture_output=True, check=True).stdout
        self.token = json.loads(answer)["data"]["token"]
        if metrics:
            self.scraper = Scraper(f"http://127.0.0.1:{metrics_port}/metrics")

    def close(self):
        if self.scraper:
            self.scraper.close()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()

    def _url(self, collection: str, suffix: str = "") -> str:
        return f"{self.url}/api/stable/repository/collection/{collection}/version{suffix}"

    def _curl(self, *args, stdin=None) -> subprocess.Popen:
        return subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                 "-H", f"Authorization: Bearer {self.token}", *args],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def _finish(self, procs):
        for proc in procs:
            out, err = proc.communicate()
            if out.decode() != "200":
                raise SystemExit(f"transfer failed: HTTP {out.decode()} {err.decode()}; "
                                 f"see {self.work / 'server.log'}")

    def measure(self, start):
        """Run the transfer(s) that ``start()`` begins; return (seconds, RssSampler)."""
        with RssSampler(self.proc.pid) as rss:
            began = time.perf_counter()
            procs = start()
            self._finish(procs)
            elapsed = time.perf_counter() - began
        return elapsed, rss

    def upload(self, body: Path, collection="bench0"):
        return self.measure(lambda: [self._curl("-X", "POST", "-T", str(body), self._url(collection))])

    def upload_chunked(self, body: Path, collection="bench0"):
        def start():
            cat = subprocess.Popen(["cat", str(body)], stdout=subprocess.PIPE)
            curl = self._curl("-X", "POST", "-T", "-", self._url(collection), stdin=cat.stdout)
            cat.stdout.close()
            return [curl]
        return self.measure(start)

    def download(self, collection="bench0"):
        return self.measure(lambda: [self._curl(self._url(collection, "/latest"))])

    def parallel_uploads(self, body: Path):
        return self.measure(lambda: [self._curl("-X", "POST", "-T", str(body), self._url(f"bench{i}"))
                                     for i in range(PARALLEL)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report(name: str, size: int, runs: list, target_mbs: float, rss_limit: float) -> dict:
    speeds = [size / seconds / 1e6 for seconds, _ in runs]
    peaks = [rss.peak for _, rss in runs]
    row = {
        "name": name, "best_mbs": max(speeds), "median_mbs": statistics.median(speeds),
        "rss_before_mib": runs[-1][1].before, "rss_peak_mib": max(peaks),
        "target_mbs": target_mbs, "rss_limit_mib": rss_limit,
    }
    verdict = "ok" if row["median_mbs"] >= target_mbs and row["rss_peak_mib"] < rss_limit else "BELOW TARGET"
    print(f"{name:<46} {row['median_mbs']:8.0f} {row['best_mbs']:8.0f} MB/s  "
          f"RSS {row['rss_before_mib']:5.1f} -> peak {row['rss_peak_mib']:5.1f} MiB   "
          f"(target >= {target_mbs:.0f} MB/s, < {rss_limit:.0f} MiB: {verdict})", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large transfer (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--server", default=None, help="server executable (default: python -m backup_repository)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--armor", action="store_true",
                        help="upload ASCII-armored messages (--size-mib of binary data, a third more on the wire)")
    parser.add_argument("--metrics", choices=("off", "on", "both"), default="both",
                        help="servers without metrics, with /metrics scraped every second, or both, alternating "
                        "(default both)")
    args = parser.parse_args(argv)
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the benchmark")

    server_cmd = [args.server] if args.server else [sys.executable, "-m", "backup_repository"]
    work = Path(tempfile.mkdtemp(prefix="br-bench-"))
    big, small = work / "big.asc", work / "small.asc"
    size, small_size = args.size_mib * MIB, PARALLEL_MIB * MIB
    make_body(big, size)
    make_body(small, small_size)
    shown = f"{args.size_mib} MiB"
    if args.armor:
        for body in (big, small):
            armor_body(body, body.with_suffix(".armored"))
            body.with_suffix(".armored").replace(body)
        size, small_size = big.stat().st_size, small.stat().st_size
    shown = f"{size // MIB} MiB{' armored' if args.armor else ''}"
    variants = {"off": [False], "on": [True], "both": [False, True]}[args.metrics]
    benches = []
    for metrics in variants:
        server_dir = work / ("metrics-on" if metrics else "metrics-off")
        server_dir.mkdir()
        benches.append(Bench(server_cmd, server_dir, metrics))
    print(f"server {' '.join(server_cmd)}; storage under {work}; {os.cpu_count()} CPUs; median and best of "
          f"{args.runs} runs; metrics: {args.metrics}", flush=True)
    measurements = (
        (f"upload {shown} (Content-Length)", size, lambda bench: bench.upload(big), 300, 100),
        (f"upload {shown} (chunked, pipe)", size, lambda bench: bench.upload_chunked(big), 250, 100),
        (f"download {shown}", size, lambda bench: bench.download(), 400, 100),
        (f"{PARALLEL} x {PARALLEL_MIB} MiB parallel uploads", PARALLEL * small_size,
         lambda bench: bench.parallel_uploads(small), 300, 150),
    )
    results = []
    try:
        for name, total, measure, target, rss_limit in measurements:
            runs = {bench: [] for bench in benches}
            for _ in range(args.runs):  # alternate between the servers: both see the same disk and page cache
                for bench in benches:
                    runs[bench].append(measure(bench))
            for bench in benches:
                label = f"{name}{', metrics on' if bench.scraper else ''}" if len(benches) > 1 else name
                results.append(report(label, total, runs[bench], target, rss_limit))
        for bench in benches:
            if bench.scraper:
                print(f"/metrics scraped {bench.scraper.scrapes} times during the run "
                      f"({bench.scraper.failures} failed)", flush=True)
    finally:
        for bench in benches:
            bench.close()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
