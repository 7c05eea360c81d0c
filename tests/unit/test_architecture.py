"""The layers of docs/architecture.md, held by import-linter's contracts in .importlinter."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(ROOT / ".importlinter")]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("storage/local.py", "from backup_repository.services import uploads",
     "backup_repository.storage.local -> backup_repository.services"),
    ("storage/local.py", "from backup_repository.domain.errors import DomainError",
     "backup_repository.storage.local -> backup_repository.domain.errors"),
    ("db/sqlite.py", "from backup_repository.domain.errors import DomainError",
     "backup_repository.db.sqlite -> backup_repository.domain.errors"),
    ("http/collections.py", "from backup_repository.storage import blobstore",
     "backup_repository.http.collections -> backup_repository.storage.blobstore"),
], ids=["store->services", "store->domain", "database->domain.errors", "handler->store"])
def test_a_wrong_import_breaks_the_contract(tmp_path, module, line, broken):
    """The check can fail: the same contracts over a copy of the package with one import that runs the wrong way
    (a store using a service; the store or the database raising the domain's errors instead of failures.py's; a
    handler using the store without a service)."""
    copy = tmp_path / "backup_repository"
    shutil.copytree(ROOT / "backup_repository", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / module, "a") as source:
        source.write(f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and broken in result.stdout.replace("\n", " ")
