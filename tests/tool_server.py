"""What the tests' own servers of real services share (MinIO, fake-gcs-server, Azurite: tests/minio.py, gcs.py,
azurite.py): finding the tool or failing clearly, starting it with its log in its work directory, waiting until it
answers, and ending it.
"""

import os
import signal
import subprocess
import time


def require(path, name: str, hint: str, variable: str) -> str:
    """``path`` (a tool found, or None) for tests: skips when it is missing, fails when ``variable`` is 1 (set by
    `make test` and .ci/run once the tools are built or installed)."""
    import pytest

    if path is None:
        if os.environ.get(variable) == "1":
            pytest.fail(f"{variable}=1 but {name} cannot run: {hint}", pytrace=False)
        pytest.skip(hint)
    return path


class ToolServer:
    """A service the tests start: ``launch()`` runs its command with stdout and stderr in ``workdir/LOG``, then waits
    until ``ready()`` says yes (raising RuntimeError, with the log's name, when it exits or stays silent)."""

    name = "tool"
    log_name = "tool.log"

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.proc = None
        self._log = None

    def ready(self) -> bool:
        raise NotImplementedError

    def launch(self, command: list, timeout: float, env: dict = None, cwd: str = None, interval: float = 0.2):
        import requests

        self._log = open(os.path.join(self.workdir, self.log_name), "ab")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see "
                                   f"{self.workdir}/{self.log_name}")
            try:
                if self.ready():
                    return self
            except requests.RequestException:
                pass
            time.sleep(interval)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready within {timeout}s; see {self.workdir}/{self.log_name}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot end
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
