"""A real S3 server for tests: MinIO on 127.0.0.1, from the binary scripts/build-test-tools.sh builds once into
``$BR_TEST_TOOLS/bin/minio``.

Every s3 backend of the tests is a bucket on it: a mock of S3 (moto, used before) checks no signature, shares no
state between concurrent requests the way a store does, and refuses no deletion of a locked object the way a real
store does; MinIO does all three (the faults of docs/scaling.md#what-is-guaranteed were found on it). ``MinioServer(workdir).start()`` serves a fresh
data directory with the test credentials of tests/support.py in region eu-central-1; ``freeze()`` and ``thaw()``
stop and continue the process (SIGSTOP/SIGCONT: the store hangs, as a store under load or across a network
partition does), ``stop()`` ends it. Its log is ``workdir/minio.log``.
"""

import os
import signal
import socket

from tests import support, tool_server
from tests.kube_cluster import free_ports, tools_dir

TOOLS_HINT = ("no MinIO binary for the tests on a real S3 server: run scripts/build-test-tools.sh (builds it once "
              "from the Go module proxy, 2 to 6 minutes, into $BR_TEST_TOOLS, default "
              "~/.cache/backup-repository/test-tools)")
REGION = "eu-central-1"


def find_minio():
    path = os.path.join(tools_dir(), "bin", "minio")
    return path if os.access(path, os.X_OK) else None


def require_minio() -> str:
    """find_minio() for tests: skips when the binary is missing, fails under BR_TEST_REQUIRE_KUBE=1 (the variable
    that .ci/run sets once the test tools are built)."""
    return tool_server.require(find_minio(), "MinIO", TOOLS_HINT, "BR_TEST_REQUIRE_KUBE")


class MinioServer(tool_server.ToolServer):
    name = "minio"
    log_name = "minio.log"

    def __init__(self, workdir, binary: str = None):
        super().__init__(workdir)
        self.binary = binary or find_minio()
        self.port, self.console_port = free_ports(2)
        self.endpoint = f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "MinioServer":
        env = {**os.environ, "MINIO_ROOT_USER": support.S3_KEY, "MINIO_ROOT_PASSWORD": support.S3_SECRET,
               "MINIO_REGION": REGION, "MINIO_BROWSER": "off", "MINIO_UPDATE": "off",
               "MINIO_CI_CD": "1"}  # no prompt, no check for a newer release
        return self.launch([self.binary, "server", os.path.join(self.workdir, "data"), "--address", self.endpoint,
                            "--console-address", f"127.0.0.1:{self.console_port}", "--quiet"], timeout, env=env)

    def ready(self) -> bool:
        import requests

        return requests.get(f"http://{self.endpoint}/minio/health/ready", timeout=1).status_code == 200

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)


def reachable(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False
