"""The layers of docs/architecture.md, held by import-linter's contracts in .importlinter."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(ROOT / ".importlinter")]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_store_importing_a_service_breaks_the_contract(tmp_path):
    """The check can fail: the same contracts over a copy of the package in which storage/ imports services/."""
    copy = tmp_path / "backup_repository"
    shutil.copytree(ROOT / "backup_repository", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "storage" / "local.py", "a") as module:
        module.write("\nfrom backup_repository.services import uploads  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "backup_repository.storage.local -> backup_repository.services" in \
        result.stdout.replace("\n", " ")
