"""A Google Cloud Storage emulator for tests: fake-gcs-server on 127.0.0.1, from the binary
scripts/build-test-tools.sh builds once into ``$BR_TEST_TOOLS/bin/fake-gcs-server``.

fake-gcs-server is the emulator the Go Cloud and Google client libraries test against; it serves GCS's JSON API
(the one storage/gcs.py speaks, through Google's client library) over plain HTTP, and servers under test reach it
through ``STORAGE_EMULATOR_HOST``, as Google's clients do. ``GcsServer(workdir).start()`` serves a fresh data
directory; ``create_bucket()`` makes a new bucket; ``stop()`` ends it. Its log is ``workdir/fake-gcs-server.log``.
"""

import os
import uuid

from tests import tool_server
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
    return tool_server.require(find_fake_gcs_server(), "fake-gcs-server", TOOLS_HINT, "BR_TEST_REQUIRE_KUBE")


def client(endpoint: str):
    """A google-cloud-storage client of the emulator at ``endpoint`` (``host:port``), for the tests' own look at the
    bucket behind the server's back."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options=ClientOptions(api_endpoint=f"http://{endpoint}"))


class GcsServer(tool_server.ToolServer):
    name = "fake-gcs-server"
    log_name = "fake-gcs-server.log"

    def __init__(self, workdir, binary: str = None):
        super().__init__(workdir)
        self.binary = binary or find_fake_gcs_server()
        (self.port,) = free_ports(1)
        self.endpoint = f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "GcsServer":
        # -public-host: the emulator routes the XML API's path-style requests only for this host; -data names a
        # directory that does not exist, so nothing is preloaded
        return self.launch(
            [self.binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-public-host", self.endpoint, "-backend", "filesystem",
             "-filesystem-root", os.path.join(self.workdir, "data"), "-data", os.path.join(self.workdir, "seed"),
             "-log-level", "warn"], timeout, interval=0.1)

    def ready(self) -> bool:
        import requests

        return requests.get(f"http://{self.endpoint}/_internal/healthcheck", timeout=1).status_code == 200

    def create_bucket(self) -> str:
        name = f"br-test-{uuid.uuid4().hex[:12]}"
        client(self.endpoint).create_bucket(name)
        return name
