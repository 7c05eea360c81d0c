"""Fixtures: real server processes over every database × storage backend, PostgreSQL and real object stores
(MinIO for S3)."""

import os
import uuid

import pytest

from tests import pg_cluster, support

#: Tests send many requests per second from 127.0.0.1; rate-limit tests pass the limits they test after these.
NO_RATE_LIMITS = ("--rate-default-limit=1000000", "--rate-auth-limit=1000000",
                  "--rate-collection-health-limit=1000000", "--rate-server-health-limit=1000000")


def server_flags(config_root) -> list:
    """The flags every test server is given: the test secrets, the configuration directory, no rate limits."""
    return [f"--jwt-secret-key={support.JWT_SECRET}", f"--health-check-key={support.HEALTH_KEY}",
            f"--config-local-path={config_root}", *NO_RATE_LIMITS]


BACKENDS = [("sqlite", "local"), ("sqlite", "s3"), ("postgres", "local"), ("postgres", "s3")]
#: The collection suite's backends: Azure (Azurite) and Google Cloud Storage (fake-gcs-server) once each, since
#: the databases were shown alike on the others
STORES = BACKENDS + [("sqlite", "azure"), ("sqlite", "gcs")]


@pytest.fixture(scope="session")
def pg_dsn():
    """DSN of a role that may create databases: BR_TEST_PG_DSN, else a throwaway cluster for this session
    (tests/pg_cluster.py), started only when a test needs it; without PostgreSQL binaries the tests are skipped,
    or fail under BR_TEST_REQUIRE_PG=1."""
    if os.environ.get("BR_TEST_PG_DSN"):
        yield os.environ["BR_TEST_PG_DSN"]
        return
    bindir = pg_cluster.find_bindir()
    if bindir is None:
        if os.environ.get("BR_TEST_REQUIRE_PG") == "1":
            pytest.fail(f"BR_TEST_REQUIRE_PG=1 but the PostgreSQL tests cannot run: {support.PG_HINT}")
        pytest.skip(support.PG_HINT)
    cluster = pg_cluster.Cluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """The PostgreSQL tests skipped for want of PostgreSQL make one line of the summary, not one per test."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(support.PG_HINT):
        report.longrepr = (__file__, None, report.longrepr[2])
    return report


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_server_log():
    """Every server started by the suite is checked when it stops: its log must not hold a secret it was given
    (JWT secret, health-check key, password hashes, S3 secret) or a token it issued."""
    yield
    assert not support.LEAKS, f"secrets found in server logs: {support.LEAKS}"


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory):
    """MinIO on loopback (tests/minio.py): the S3 server of every s3 backend; the ``MinioServer``, so that a test
    can freeze it."""
    from tests.minio import MinioServer, require_minio

    server = MinioServer(tmp_path_factory.mktemp("minio"), require_minio()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """Azurite's Blob service on loopback (tests/azurite.py): a real Azure Blob Storage protocol server."""
    from tests.azurite import AzuriteServer, require_azurite

    server = AzuriteServer(tmp_path_factory.mktemp("azurite"), require_azurite()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server on loopback (tests/gcs.py): the GCS emulator, for gs:// storage; the ``GcsServer``."""
    from tests.gcs import GcsServer, require_fake_gcs_server

    server = GcsServer(tmp_path_factory.mktemp("gcs"), require_fake_gcs_server()).start()
    try:
        yield server
    finally:
        server.stop()


def create_bucket(endpoint: str, object_lock: bool = False) -> str:
    """A new bucket; with ``object_lock``, one created with S3 Object Lock enabled (versioning comes with it)."""
    name = f"br-test-{uuid.uuid4().hex[:12]}"
    support.s3_client(endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    return name


@pytest.fixture
def make_backend(request, tmp_path_factory):
    """make_backend(db, storage) -> Backend with the flags and environment of fresh, empty stores."""
    made = []

    def make(db: str, storage: str, object_lock: str = None) -> support.Backend:
        """``storage``: local, s3 (a bucket on MinIO; ``minio`` is the same), azure (a fresh container on Azurite)
        or gcs (a fresh bucket on fake-gcs-server); ``object_lock`` (s3): governance or compliance — a bucket with
        Object Lock, and objectLock= in the storage URL."""
        backend = support.Backend(db, storage)
        work = tmp_path_factory.mktemp(f"{db}-{storage}")
        if db == "sqlite":
            backend.db_path = work / "metadata.sqlite3"
            backend.args.append(f"--db-path={backend.db_path}")
        else:
            dsn = request.getfixturevalue("pg_dsn")
            params = support.create_pg_database(dsn)
            backend.db_params = params
            backend.args += support.pg_flags(params)
            backend.cleanup.append(lambda: support.drop_pg_database(dsn, params["dbname"]))
        if storage == "local":
            (work / "storage").mkdir()
            backend.storage_path = work / "storage"
            backend.args.append(f"--storage-url=file://{work / 'storage'}")
        elif storage == "azure":
            from tests.azurite import Blobs

            azurite = request.getfixturevalue("azurite_server")
            backend.blobs = Blobs.create(azurite)
            backend.bucket = backend.blobs.container_name
            backend.args.append(f"--storage-url={azurite.storage_url(backend.bucket)}")
            backend.env.update(AZURE_STORAGE_ACCOUNT=support.AZURE_ACCOUNT, AZURE_STORAGE_KEY=support.AZURE_KEY)
        elif storage == "gcs":
            gcs = request.getfixturevalue("gcs_server")
            backend.bucket, backend.gcs_endpoint = gcs.create_bucket(), gcs.endpoint
            backend.args.append(f"--storage-url=gs://{backend.bucket}")
            backend.env["STORAGE_EMULATOR_HOST"] = gcs.endpoint
        else:
            endpoint = request.getfixturevalue("minio_server").endpoint
            bucket = create_bucket(endpoint, object_lock=object_lock is not None)
            backend.bucket, backend.s3_endpoint = bucket, endpoint
            backend.args.append(
                f"--storage-url=s3://{bucket}?endpoint={endpoint}&disableSSL=true&s3ForcePathStyle=true"
                "&region=eu-central-1" + (f"&objectLock={object_lock}" if object_lock else ""))
            backend.env.update(AWS_ACCESS_KEY_ID=support.S3_KEY, AWS_SECRET_ACCESS_KEY=support.S3_SECRET)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        for cleanup in backend.cleanup:
            cleanup()


@pytest.fixture
def start_server(tmp_path_factory):
    """start_server(backend, config, *extra flags, env={}) -> a running Server; all are stopped at the end."""
    servers = []

    def start(backend, config, *extra, env=None, **kwargs):
        home = tmp_path_factory.mktemp("home")
        environment = support.base_env(home)
        environment.update(backend.env)
        environment.update(env or {})
        args = ["--listen=127.0.0.1:0", *server_flags(config.root), "--config-reload-interval=0.5s", *backend.args,
                *extra]
        if backend.storage != "local" and not any(arg.startswith("--log-format") for arg in extra):
            args.append("--log-format=json")  # so that the leak checks and log assertions run on JSON logs too
        server = support.Server(args, environment, home / "server.log")
        servers.append(server)
        return server.start(**kwargs)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def config(tmp_path):
    return support.ConfigDir(tmp_path / "config")


@pytest.fixture
def api(backend, config, start_server):
    """A server on ``backend`` with ``config`` (the example configuration); a module narrows ``backend`` or adds
    to ``config`` by overriding those fixtures."""
    server = start_server(backend, config)
    server.backend = backend
    return server


@pytest.fixture(params=BACKENDS, ids=[f"{db}-{st}" for db, st in BACKENDS])
def backend(request, make_backend):
    return make_backend(*request.param)


@pytest.fixture(scope="session")
def gpg(tmp_path_factory):
    """Real gpg with a throwaway key, shared by the session (key generation takes a moment)."""
    return support.Gpg(tmp_path_factory.mktemp("gnupg"))
