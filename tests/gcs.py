"""A Google Cloud Storage emulator for tests: fake-gcs-server on 127.0.0.1, from the binary
scripts/build-test-tools.sh builds once into ``$BR_TEST_TOOLS/bin/fake-gcs-server``.

fake-gcs-server is the emulator the Go Cloud and Google client libraries test against; it serves GCS's JSON API
(the one storage/gcs.py speaks, through Google's client library) over plain HTTP, and servers under test reach it
through ``STORAGE_EMULATOR_HOST``, as Google's clients do. ``GcsServer(workdir).start()`` serves a fresh data
directory; ``create_bucket()`` makes a new bucket; ``stop()`` ends it. Its log is ``workdir/fake-gcs-server.log``.
"""

import os
import subprocess
import time
import uuid

from tests.kube_cluster import free_ports, tools_dir

TOOLS_HINT = ("no fake-gcs-server binary for the tests on a GCS emulator: run scripts/build-test-tools.sh (builds "
              "it once from the Go module proxy, 1 to 2 minutes, into $BR_TEST_TOOLS, default "
              "~/.cache/backup-repository/test-tools)")


def find_fake_gcs_server():
    path = os.path.join(tools_dir(), "bin", "fake-gcs-server")
    return path if os.access(path, os.X_OK) else None


def require_fake_gcs_server() -> str:
    """find_fake_gcs_server() for tests: skips when the binary is missing, fails under BR_TEST_REQUIRE_KUBE=1 (the
    variable that .ci/run sets once the test tools are built)."""
    import pytest

    path = find_fake_gcs_server()
    if path is None:
        if os.environ.get("BR_TEST_REQUIRE_KUBE") == "1":
            pytest.fail(f"BR_TEST_REQUIRE_KUBE=1 but fake-gcs-server cannot run: {TOOLS_HINT}", pytrace=False)
        pytest.skip(TOOLS_HINT)
    return path


def client(endpoint: str):
    """A google-cloud-storage client of the emulator at ``endpoint`` (``host:port``), for the tests' own look at the
    bucket behind the server's back."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options=ClientOptions(api_endpoint=f"http://{endpoint}"))


class GcsServer:
    def __init__(self, workdir, binary: str = None):
        self.workdir = str(workdir)
        self.binary = binary or find_fake_gcs_server()
        (self.port,) = free_ports(1)
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = None
        self._log = None

    def start(self, timeout: float = 30) -> "GcsServer":
        import requests

        self._log = open(os.path.join(self.workdir, "fake-gcs-server.log"), "ab")
        # -public-host: the emulator routes the XML API's path-style requests only for this host; -data names a
        # directory that does not exist, so nothing is preloaded
        self.proc = subprocess.Popen(
            [self.binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-public-host", self.endpoint, "-backend", "filesystem",
             "-filesystem-root", os.path.join(self.workdir, "data"), "-data", os.path.join(self.workdir, "seed"),
             "-log-level", "warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.proc.returncode}; see "
                                   f"{self.workdir}/fake-gcs-server.log")
            try:
                if requests.get(f"http://{self.endpoint}/_internal/healthcheck", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not become ready within {timeout}s; see "
                           f"{self.workdir}/fake-gcs-server.log")

    def create_bucket(self) -> str:
        name = f"br-test-{uuid.uuid4().hex[:12]}"
        client(self.endpoint).create_bucket(name)
        return name

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
