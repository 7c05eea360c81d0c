"""The collection metrics at scale: a scrape of /metrics with N collections, and what computing them costs.

    make bench-metrics                 # or: python benchmarks/metrics_scrape.py [--tenants 10000] [--scrapes 50]

A server (SQLite, local storage, in a temporary directory) is started over the configuration of
benchmarks/config_scale.py (N tenants, each with a collection that has a daily backup window) with
``--metrics-listen``; one version is uploaded to every collection, so that every gauge has a sample. Then:

- scrape: the latency of ``GET /metrics`` (median, 95th percentile and worst of ``--scrapes``, one after the
  other on a keep-alive connection) and the size of the answer;
- refresh: how long one computation of the collection metrics takes (the server's own
  ``backup_repository_collections_refresh_duration_seconds``: three queries, the window checks, the rendering);
- while the refreshes run: the latency of ``GET /health`` every 20 ms for ``--load-seconds`` (median, 99th
  percentile, worst), against the same with ``--metrics-refresh-interval`` so long that no refresh happens;
- the server's RSS.

Figures: docs/performance.md#metrics.
"""

import argparse
import concurrent.futures
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config_scale import FilesystemSource, JWT, PASSWORD, rss_mib  # noqa: E402
from tests.support import free_port, pgp_message  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def start(work: Path, source, metrics_port: int, refresh: str):
    log = open(work / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backup_repository", "--listen=127.0.0.1:0", f"--jwt-secret-key={JWT}",
         f"--db-path={work / 'metadata.sqlite3'}", f"--storage-url=file://{work / 'storage'}", "--log-level=warning",
         f"--metrics-listen=127.0.0.1:{metrics_port}", f"--metrics-refresh-interval={refresh}",
         "--rate-default-limit=1000000", "--rate-server-health-limit=1000000", "--rate-auth-limit=1000000",
         *source.args()],
        stdout=subprocess.PIPE, stderr=log, cwd=str(ROOT))
    for _ in range(500):
        match = re.search(r"listening on (http://\S+)", proc.stdout.readline().decode())
        if match:
            return proc, match.group(1)
    raise SystemExit(f"the server did not start; see {work / 'server.log'}")


def stop(proc):
    proc.terminate()
    proc.wait(30)


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


def percentile(values, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def health_latency(url: str, seconds: float) -> list:
    session = requests.Session()
    timings = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        session.get(f"{url}/health", timeout=30)
        timings.append(time.perf_counter() - began)
        time.sleep(0.02)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="br-bench-metrics-"))
    (work / "storage").mkdir()
    source = FilesystemSource(work)
    source.populate(args.tenants)
    port = free_port()
    proc, url = start(work, source, port, "10s")
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        token = requests.post(f"{url}/api/stable/auth/login", json={"username": "admin", "password": PASSWORD},
                              timeout=30).json()["data"]["token"]
        body = pgp_message(b"x" * 4096)
        began = time.monotonic()

        def upload(indexes):
            session = requests.Session()
            for index in indexes:
                answer = session.post(f"{url}/api/stable/repository/collection/t{index}-db/version", data=body,
                                      headers={"Authorization": f"Bearer {token}"}, timeout=60)
                assert answer.status_code == 200, answer.text
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, [range(part, args.tenants, 4) for part in range(4)]))
        print(f"{args.tenants} collections, one version each (uploaded in {time.monotonic() - began:.0f}s)")

        session = requests.Session()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every collection's version shows
            text = session.get(metrics, timeout=30).text
            if text.count("backup_repository_collection_latest_version_timestamp_seconds{") == args.tenants:
                break
            time.sleep(1)
        else:
            raise SystemExit("the collection metrics never showed every version")
        time.sleep(11)  # one more refresh: its duration is shown by the next
        timings, size = [], 0
        for _ in range(args.scrapes):
            began = time.perf_counter()
            answer = session.get(metrics, timeout=30)
            timings.append(time.perf_counter() - began)
            size = len(answer.content)
        text = answer.text
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"scrape: median {statistics.median(timings) * 1000:.1f} ms, p95 {percentile(timings, 0.95) * 1000:.1f} ms, "
              f"worst {max(timings) * 1000:.1f} ms; {size / 2**20:.2f} MiB, {series} series")
        print(f"refresh: {gauge(text, 'backup_repository_collections_refresh_duration_seconds') * 1000:.0f} ms "
              f"(every 10 s); server RSS {rss_mib(proc.pid):.1f} MiB")
        loaded = health_latency(url, args.load_seconds)
    finally:
        stop(proc)
    proc, url = start(work, source, port, "24h")  # the first refresh only, then none
    try:
        time.sleep(15)
        quiet = health_latency(url, args.load_seconds)
        print(f"server RSS without refreshes {rss_mib(proc.pid):.1f} MiB")
    finally:
        stop(proc)
    for name, timings in (("GET /health while refreshing every 10 s", loaded), ("GET /health, no refresh", quiet)):
        print(f"{name:<42} median {statistics.median(timings) * 1000:.2f} ms, p99 "
              f"{percentile(timings, 0.99) * 1000:.2f} ms, worst {max(timings) * 1000:.1f} ms ({len(timings)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
