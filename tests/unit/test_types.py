"""The ports of services/ports.py, held by mypy (mypy.ini): every backend, provider and repository satisfies them,
and the checked packages carry no way around the check."""

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

#: The packages the issue of the ports named; the whole package is checked, and nothing in it may silence mypy.
CHECKED = ("services", "storage", "config", "db")


def mypy(cwd: Path) -> subprocess.CompletedProcess:
    # no cache: a stale one can pass what the sources no longer do, and a whole run takes about 2 s
    command = [str(Path(sys.executable).with_name("mypy")), "--config-file", str(cwd / "mypy.ini"),
               "--cache-dir", "/dev/null"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_ports_are_kept():
    result = mypy(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")


def test_the_check_covers_the_whole_package_and_ignores_nothing():
    config = configparser.ConfigParser()
    config.read(ROOT / "mypy.ini")
    files = [name.strip() for name in config["mypy"]["files"].split(",")]
    assert files == ["backup_repository"]  # every module: the handlers, the server and the command line too
    for section in config.sections():  # per-module settings only relax the checking of untyped libraries
        if section != "mypy":
            assert not section.startswith("mypy-backup_repository"), section
            assert set(config[section]) == {"ignore_missing_imports"}, section
    for path in (ROOT / "backup_repository").rglob("*.py"):
        assert not re.search(r"#\s*type:\s*ignore", path.read_text()), path
    assert all((ROOT / "backup_repository" / package).is_dir() for package in CHECKED)


@pytest.mark.parametrize("module, old, new, error", [
    ("storage/gcs.py", "    def sweep_temporary(self, older_than: float) -> list[str]:",
     "    def sweep_temporaries(self, older_than: float) -> list[str]:",
     'Cannot instantiate abstract class "GcsBackend" with abstract attribute "sweep_temporary"'),
    ("config/kubernetes.py",
     "    async def write_status(self, collection_id: str, status: CollectionStatus) -> Optional[bool]:",
     "    async def write_status(self, collection_id: str, status: str) -> Optional[bool]:",
     'Argument 2 of "write_status" is incompatible with supertype'),
    ("db/versions.py", "    async def latest(self, collection_id: str) -> Optional[Version]:",
     "    async def latest(self, collection_id: int) -> Optional[Version]:",
     'versions: expected "backup_repository.services.ports.Versions"'),
], ids=["backend-missing-a-call", "provider-status-signature", "repository-part-signature"])
def test_a_broken_port_fails_the_check(tmp_path, module, old, new, error):
    """The check can fail: a copy of the package with one implementation that no longer fits its port (a
    backend that misses a call, a provider's status writer, a part of the repository)."""
    shutil.copytree(ROOT / "backup_repository", tmp_path / "backup_repository",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mypy.ini", tmp_path / "mypy.ini")
    source = tmp_path / "backup_repository" / module
    text = source.read_text()
    assert text.count(old) == 1
    source.write_text(text.replace(old, new))
    result = mypy(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error in result.stdout.replace("\n", " "), result.stdout
