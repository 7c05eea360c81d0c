"""Nothing happens at import: importing every module of the package hashes nothing, registers nothing
process-wide and installs no warnings filter (docs/architecture.md)."""

import subprocess
import sys

from tests.support import ROOT

PROBE = r"""
import importlib, pkgutil, sqlite3, warnings
import argon2.low_level
# the libraries first: what they do at import (urllib3 and aiopg add warnings filters) is theirs, not ours
import aiopg, anycrc, croniter, jwt, libcloud.storage.providers, tornado.web, yaml  # noqa

calls = []
original = argon2.low_level.hash_secret_raw
argon2.low_level.hash_secret_raw = lambda *a, **k: calls.append(1) or original(*a, **k)
filters = list(warnings.filters)
converters = dict(sqlite3.converters)
adapters = dict(sqlite3.adapters)

import backup_repository
names = [m.name for m in pkgutil.walk_packages(backup_repository.__path__, "backup_repository.")]
for name in names:
    if name != "backup_repository.__main__":
        importlib.import_module(name)

assert len(names) > 40, names
assert calls == [], "argon2 ran at import"
assert warnings.filters == filters, "a warnings filter was installed at import"
assert dict(sqlite3.converters) == converters and dict(sqlite3.adapters) == adapters, "sqlite3 registrations"
print("ok", len(names))
"""


def test_importing_every_module_does_nothing_global():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok")
