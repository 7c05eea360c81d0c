"""A throwaway PostgreSQL cluster for one test session, when ``BR_TEST_PG_DSN`` names none.

``find_bindir()`` locates the server binaries (initdb, pg_ctl, postgres): ``$BR_TEST_PG_BINDIR`` if set (an
empty directory there simulates a machine without them), else ``pg_config --bindir``, else the newest Debian
``/usr/lib/postgresql/*/bin``. ``Cluster.start()`` runs initdb in a fresh temporary directory (trust
authentication, superuser ``br_test``), starts the server on a free port of 127.0.0.1 only, without durability
(fsync off: the data is thrown away), creates the ``br_test`` database and returns its DSN; ``stop()`` stops the
server and deletes the directory. PostgreSQL refuses to run as root: as root, the binaries run as the
``postgres`` system user (which the Debian package creates) and the directory is given to it.
"""

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

USER = "br_test"


def find_bindir():
    """The directory holding initdb, pg_ctl and postgres, or None when this machine has none."""
    if "BR_TEST_PG_BINDIR" in os.environ:
        candidates = [os.environ["BR_TEST_PG_BINDIR"]]
    else:
        candidates = []
        if shutil.which("pg_config"):
            result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
            candidates.append(result.stdout.strip())
        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                             key=lambda path: [int(n) for n in re.findall(r"\d+", path)])  # newest first
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self, bindir: str):
        self.bindir = bindir
        self.root = None
        self.running = False
        self.as_user = []  # the command prefix that drops root

    def _run(self, program: str, *args: str):
        command = [*self.as_user, os.path.join(self.bindir, program), *args]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = os.path.join(self.root, "postgres.log")
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"{tail}")

    def start(self) -> str:
        """Initialise and start the cluster; returns the DSN of its superuser on its maintenance database."""
        atexit.register(self.stop)  # in case the session ends without its fixture's teardown
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("PostgreSQL refuses to run as root and there is no 'postgres' user to run the "
                                   "test cluster as: run the tests as another user, or set BR_TEST_PG_DSN") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        # Under /tmp, which every user may traverse, and short: a socket's path must stay under 108 bytes.
        self.root = tempfile.mkdtemp(prefix="br-test-pg-", dir="/tmp")
        sockets = os.path.join(self.root, "sockets")
        os.mkdir(sockets)
        if owner:
            for path in (self.root, sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        data = os.path.join(self.root, "data")
        self._run("initdb", "-D", data, "-U", USER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off")
        self.running = True  # from here on, stop() must try pg_ctl stop even if start fails half-way
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.root, "postgres.log"), "-o", options,
                  "-w", "-t", "60", "start")
        self._create_database(port)
        return f"postgresql://{USER}@127.0.0.1:{port}/{USER}"

    def _create_database(self, port: int):
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{USER}"')
        conn.close()

    def stop(self):
        """Stop the server (immediately: nothing in it is kept) and delete its directory; safe to call twice."""
        if self.running:
            self.running = False
            try:
                self._run("pg_ctl", "-D", os.path.join(self.root, "data"), "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # not started, or already gone: the directory is removed all the same
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
