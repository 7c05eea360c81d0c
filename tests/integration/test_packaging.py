"""The ways the server ships: the single executable, the systemd unit (and its readiness protocol), the env file
example and the container image's Dockerfile."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from backup_repository.security.passwords import verify_password
from backup_repository.settings import OPTIONS
from tests import support
from tests.integration.collections_config import PASSWORD, write_collections_config

ROOT = support.ROOT
UNIT = ROOT / "systemd" / "backup-repository.service"
BINARY = ROOT / "dist" / "backup-repository"


def sources_mtime() -> float:
    paths = [*ROOT.joinpath("backup_repository").rglob("*.py"), *ROOT.joinpath("packaging").glob("*")]
    return max(p.stat().st_mtime for p in paths)


@pytest.fixture(scope="module")
def binary():
    """dist/backup-repository, built now unless a build newer than every source file is there already."""
    if not BINARY.exists() or BINARY.stat().st_mtime < sources_mtime():
        result = subprocess.run(
            [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
             "--distpath", str(ROOT / "dist"), "--workpath", str(ROOT / "build" / "pyinstaller"),
             str(ROOT / "packaging" / "backup-repository.spec")],
            capture_output=True, text=True, cwd=str(ROOT), timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return BINARY


def clean_env(home):
    """No Python of ours on the path: the executable must carry everything itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BR_", "PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    env["PATH"] = "/usr/bin:/bin"
    return env


def test_the_executable_answers_help_and_encodes_passwords(binary, tmp_path):
    help_run = subprocess.run([str(binary), "--help"], capture_output=True, text=True, env=clean_env(tmp_path))
    assert help_run.returncode == 0 and "--storage-url" in help_run.stdout
    encoded = subprocess.run([str(binary), "--encode-password", "s3cret"], capture_output=True, text=True,
                             env=clean_env(tmp_path), check=True).stdout.strip()
    assert verify_password("s3cret", encoded) and not verify_password("other", encoded)


def test_the_executable_serves_a_backup_round_trip(binary, tmp_path, config, make_backend):
    backend = make_backend("sqlite", "local")
    write_collections_config(config)
    args = ["--listen=127.0.0.1:0", f"--jwt-secret-key={support.JWT_SECRET}", f"--config-local-path={config.root}",
            *backend.args]
    server = support.Server(args, clean_env(tmp_path), tmp_path / "binary.log", command=[str(binary)])
    began = time.monotonic()
    server.start(timeout=10)
    try:
        while requests.get(server.url + "/health", timeout=5).status_code != 200:
            time.sleep(0.05)
        ready_after = time.monotonic() - began
        assert ready_after < 3.0, ready_after
        token = server.login("admin", PASSWORD)
        body = support.pgp_message(os.urandom(100_000))
        stored = server.request("POST", "/api/stable/repository/collection/docs/version", token, data=body)
        assert stored.status_code == 200, stored.text
        back = server.get("/api/stable/repository/collection/docs/version/latest", token)
        assert back.content == body
        print(f"\nexecutable: {binary.stat().st_size / 2**20:.1f} MiB, /health answered {ready_after:.2f}s after start")
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_readiness_and_stopping_are_reported_to_systemd(make_backend, config, start_server, tmp_path):
    """The test is systemd: it owns NOTIFY_SOCKET and expects READY=1 once listening, STOPPING=1 on SIGTERM."""
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    try:
        server = start_server(make_backend("sqlite", "local"), config, env={"NOTIFY_SOCKET": path})
        ready = listener.recv(4096).decode()
        assert "READY=1" in ready.splitlines()
        assert requests.get(server.url + "/health", timeout=5).status_code == 200  # ready means serving
        server.proc.send_signal(signal.SIGTERM)
        stopping = listener.recv(4096).decode()
        assert "STOPPING=1" in stopping.splitlines()
        assert server.proc.wait(30) == 0
    finally:
        listener.close()


def unit_directives() -> dict:
    directives = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def test_the_unit_is_hardened():
    d = unit_directives()
    assert d["Type"] == ["notify"] and d["ExecStart"][0].endswith("/backup-repository")
    assert d["User"] == ["backup-repository"] and "StateDirectory" in d
    assert d["EnvironmentFile"] == ["/etc/backup-repository/env"]
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                "ProtectKernelLogs": "yes", "UMask": "077", "CapabilityBoundingSet": ""}
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in d["SystemCallFilter"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed here")
def test_systemd_analyze_accepts_the_unit(tmp_path):
    # verify checks that ExecStart exists: point it at an executable that does
    unit = tmp_path / "backup-repository.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable}", UNIT.read_text()))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                              text=True)
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
    assert level < 2.0, security.stdout[-2000:]


def test_the_env_example_names_every_variable():
    text = (ROOT / "systemd" / "backup-repository.env.example").read_text()
    for option in OPTIONS:
        if option.env:
            assert re.search(rf"(?m)^#?{option.env}=", text), option.env
            assert f"# {option.flags[-1]}: " in text, option.flags[-1]


def test_the_dockerfile_builds_the_executable_and_runs_it_unprivileged():
    lines = [line.strip() for line in (ROOT / "packaging" / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    stages = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(stages) == 2 and stages[0].lower().endswith(" as build")
    assert "distroless" in stages[1]
    final = lines[lines.index(stages[1]):]
    assert any("pyinstaller" in line and "backup-repository.spec" in line for line in lines[:lines.index(stages[1])])
    assert any(line.startswith("COPY --from=build") and "/backup-repository" in line for line in final)
    assert [line for line in final if line.startswith("USER ")] == ["USER 65532:65532"]
    assert 'ENTRYPOINT ["/backup-repository"]' in final
    assert "EXPOSE 8080" in final and any(line.startswith("VOLUME") and "/data" in line for line in final)
    # the referenced files exist
    for line in lines[:lines.index(stages[1])]:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_installing_walkthrough_backs_up_and_restores(make_backend, config, start_server, tmp_path):
    """The "First backup and restore" block of docs/installing.md, run as it is with bash, gpg, tar and curl."""
    text = (ROOT / "docs" / "installing.md").read_text()
    block = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    script = block.split("```sh", 1)[1].rsplit("```", 1)[0]
    write_collections_config(config)
    server = start_server(make_backend("sqlite", "local"), config)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "dump.sql").write_bytes(os.urandom(300_000))
    (data / "sub" / "notes.txt").write_text("restore me\n")
    work = tmp_path / "work"
    work.mkdir()
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "BR_URL": server.url, "BR_USER": "admin", "BR_PASSWORD": PASSWORD, "COLLECTION": "docs",
           "DATA_DIR": str(data), "GNUPGHOME": str(gnupg), "HOME": str(tmp_path)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=str(work), env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"versionNumber": 1' in result.stdout
    assert (work / "restore" / "dump.sql").read_bytes() == (data / "dump.sql").read_bytes()
    assert (work / "restore" / "sub" / "notes.txt").read_text() == "restore me\n"


def test_the_minio_recipe_of_installing_md_works(config, start_server, tmp_path):
    """Section 4 of docs/installing.md run as it is (paths and port aside): MinIO started, a bucket with Object
    Lock made by curl's own signing, and the server started on the environment it gives, objectLock included (a
    bucket without the lock would stop the start)."""
    from tests.minio import require_minio

    section = (ROOT / "docs" / "installing.md").read_text().split("## 4. S3 or MinIO", 1)[1].split("\n## ", 1)[0]
    setup, environment = [block.split("\n", 1)[1] for block in section.split("```sh")[1:3]]
    setup, environment = setup.split("```")[0], environment.split("```")[0]
    port = support.free_port()
    setup = setup.replace("/srv/minio", str(tmp_path / "minio")).replace("127.0.0.1:9000", f"127.0.0.1:{port}")
    setup = setup.replace("--address", "--console-address 127.0.0.1:0 --address")
    setup = setup.replace(" &\n", f" >{tmp_path / 'minio.log'} 2>&1 & echo $! > {tmp_path / 'minio.pid'}\n", 1)
    env = {**os.environ, "PATH": f"{os.path.dirname(require_minio())}:{os.environ['PATH']}", "MINIO_BROWSER": "off"}
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", setup], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "minio.log").read_text()
        variables = dict(line.split("=", 1) for line in environment.strip().splitlines())
        variables["BR_STORAGE_DRIVER_URL"] = variables["BR_STORAGE_DRIVER_URL"].replace("127.0.0.1:9000",
                                                                                        f"127.0.0.1:{port}")
        assert "objectLock=governance" in variables["BR_STORAGE_DRIVER_URL"]
        write_collections_config(config)
        backend = support.Backend("sqlite", "s3", args=[f"--db-path={tmp_path / 'metadata.sqlite3'}"], env=variables)
        server = start_server(backend, config)
        token = server.login("admin", PASSWORD)
        stored = server.request("POST", "/api/stable/repository/collection/docs/version", token,
                                data=support.pgp_message(b"to MinIO"))
        assert stored.status_code == 200, stored.text
        client = support.s3_client(f"127.0.0.1:{port}", key=variables["AWS_ACCESS_KEY_ID"],
                                   secret=variables["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
        lock = client.get_object_lock_configuration(Bucket="backups")["ObjectLockConfiguration"]
        assert lock["ObjectLockEnabled"] == "Enabled"
        assert client.head_object(Bucket="backups", Key="docs/docs-1.gpg")["ContentLength"] == len(
            support.pgp_message(b"to MinIO"))
    finally:
        if (tmp_path / "minio.pid").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((tmp_path / "minio.pid").read_text()), signal.SIGKILL)


def test_make_install_places_the_executable_and_the_unit(binary, tmp_path):
    dest = tmp_path / "root"
    result = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/opt/br"], cwd=str(ROOT),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = dest / "opt" / "br" / "bin" / "backup-repository"
    assert installed.exists() and os.access(installed, os.X_OK)
    unit = (dest / "etc" / "systemd" / "system" / "backup-repository.service").read_text()
    assert "ExecStart=/opt/br/bin/backup-repository" in unit
    env = dest / "etc" / "backup-repository" / "env"
    assert env.exists() and oct(env.stat().st_mode & 0o777) == "0o600"
    assert (dest / "usr" / "lib" / "sysusers.d" / "backup-repository.conf").exists()
