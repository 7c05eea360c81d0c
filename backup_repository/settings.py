"""Settings of a server run: every command-line flag, its environment variable, default and meaning.

``OPTIONS`` is the single table that the command line, the environment, ``--help`` and the documentation
(docs/configuration.md) follow. Values are parsed and validated here, so the rest of the server only ever sees
typed, valid settings.
"""

import os
from dataclasses import dataclass
from typing import Callable, Optional

from backup_repository.domain.units import parse_duration
from backup_repository.domain.networks import parse_networks

DATA_HOME = "~/.backup-repository"
LOG_LEVELS = {"debug": "DEBUG", "trace": "DEBUG", "info": "INFO", "warning": "WARNING", "warn": "WARNING",
              "error": "ERROR", "fatal": "ERROR", "panic": "ERROR"}
LOG_FORMATS = ("text", "json")
PROVIDERS = ("filesystem", "kubernetes")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def parse_port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError("a port must be between 1 and 65535")
    return port


def parse_listen(text: str):
    """``:8080`` (every interface), ``127.0.0.1:8080``, ``[::1]:8080``; port 0 picks a free port."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ValueError("expected [host]:port, for example :8080 or 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, for example [::1]:8080")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError("a port must be between 0 and 65535")
    return host, number


def parse_optional_listen(text: str):
    """An address as for --listen, or None for an empty value (no listener)."""
    return parse_listen(text) if text.strip() else None


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError("expected true or false")


def parse_log_level(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_LEVELS:
        raise ValueError("expected one of debug, info, warning, error")
    return value


def parse_log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError("expected text or json")
    return value


def parse_provider(text: str) -> str:
    if text not in PROVIDERS:
        raise ValueError(f"expected one of {', '.join(PROVIDERS)}")
    return text


def positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def non_negative_int(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def ipv6_prefix(text: str) -> int:
    number = int(text)
    if not 1 <= number <= 128:
        raise ValueError("must be a prefix length from 1 to 128")
    return number


def positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def duration_or_off(text: str) -> float:
    """A duration, or 0 / ``off`` for never."""
    if text.strip().lower() in ("0", "off", "never", ""):
        return 0.0
    return positive_duration(text)


def parse_trusted_proxies(text: str) -> tuple:
    """Comma-separated IPs or CIDRs, IPv4 or IPv6; empty for none."""
    return parse_networks(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class Option:
    dest: str
    flags: tuple
    env: Optional[str]
    default: str
    parse: Callable
    help: str
    secret: bool = False
    boolean: bool = False


OPTIONS = (
    Option("namespace", ("-n", "--namespace"), None, "backup-repository", str,
           "namespace folder of the configuration"),
    Option("db_hostname", ("--db-hostname",), "BR_DB_HOSTNAME", "localhost", str, "PostgreSQL host"),
    Option("db_user", ("--db-user",), "BR_DB_USERNAME", "", str,
           "PostgreSQL user; without it the embedded SQLite database at --db-path is used"),
    Option("db_password", ("--db-password",), "BR_DB_PASSWORD", "", str, "PostgreSQL password", secret=True),
    Option("db_name", ("--db-name",), "BR_DB_NAME", "", str, "PostgreSQL database (default: the user name)"),
    Option("db_port", ("--db-port",), "BR_DB_PORT", "5432", parse_port, "PostgreSQL port"),
    Option("db_path", ("--db-path",), "BR_DB_PATH", f"{DATA_HOME}/data/metadata.sqlite3", str,
           "file of the embedded SQLite database, used when no --db-user is given"),
    Option("jwt_secret_key", ("-s", "--jwt-secret-key"), "BR_JWT_SECRET_KEY", "", str,
           "HMAC key that signs tokens; required to serve", secret=True),
    Option("jwt_expiry", ("--jwt-expiry",), "BR_JWT_EXPIRY", "87600h", positive_duration,
           "lifetime of a token (every token can be revoked with logout)"),
    Option("health_check_key", ("-k", "--health-check-key"), "BR_HEALTH_CHECK_KEY", "", str,
           "code that /ready requires (Authorization header or ?code=); /ready refuses everyone when empty",
           secret=True),
    Option("log_level", ("--log-level",), "BR_LOG_LEVEL", "debug", parse_log_level,
           "debug, info, warning or error"),
    Option("log_format", ("--log-format",), "BR_LOG_FORMAT", "text", parse_log_format,
           "text (one readable line per event) or json (one JSON object per line, for Loki, ELK and other log "
           "shippers; see docs/monitoring.md#logs)"),
    Option("storage_url", ("--storage-url",), "BR_STORAGE_DRIVER_URL", "", str,
           f"blob storage URL: file:///dir, s3://bucket?..., gs://bucket (default: a directory under {DATA_HOME})"),
    Option("use_google_cloud", ("--use-google-cloud",), "BR_USE_GOOGLE_CLOUD", "false", parse_bool,
           "--storage-url is a Google Cloud Storage bucket name", boolean=True),
    Option("storage_health_timeout", ("--storage-health-timeout",), "BR_STORAGE_HEALTH_TIMEOUT", "5s",
           positive_duration, "time limit of the storage check in /ready"),
    Option("storage_io_timeout", ("--storage-io-timeout",), "BR_STORAGE_IO_TIMEOUT", "2h", positive_duration,
           "maximum time to write or read one file"),
    Option("http_upload_timeout", ("--http-upload-timeout",), "BR_HTTP_UPLOAD_TIMEOUT", "180m", positive_duration,
           "maximum duration of one upload request"),
    Option("http_download_timeout", ("--http-download-timeout",), "BR_HTTP_DOWNLOAD_TIMEOUT", "180m",
           positive_duration, "maximum duration of one download request"),
    Option("http_upload_idle_timeout", ("--http-upload-idle-timeout",), "BR_HTTP_UPLOAD_IDLE_TIMEOUT", "5m",
           positive_duration, "an upload that sends no body byte for this long is aborted (408) and its collection "
           "freed for the next upload"),
    Option("http_upload_min_rate", ("--http-upload-min-rate",), "BR_HTTP_UPLOAD_MIN_RATE", "100", non_negative_int,
           "an upload whose body averages fewer bytes per second than this over --http-upload-rate-window is "
           "aborted (408) and its collection freed (0: no such rule)"),
    Option("http_upload_rate_window", ("--http-upload-rate-window",), "BR_HTTP_UPLOAD_RATE_WINDOW", "5m",
           positive_duration, "the window over which --http-upload-min-rate is averaged (time the storage makes "
           "the upload wait does not count)"),
    Option("http_idle_timeout", ("--http-idle-timeout",), "BR_HTTP_IDLE_TIMEOUT", "60s", positive_duration,
           "a connection without a request, slow headers, or a slow body (except uploads) is closed after this"),
    Option("rate_default_limit", ("--rate-default-limit",), None, "5", positive_int,
           "requests per second per client IP on most endpoints"),
    Option("rate_auth_limit", ("--rate-auth-limit",), None, "10", positive_int,
           "requests per minute per client IP on login and refresh"),
    Option("rate_collection_health_limit", ("--rate-collection-health-limit",), None, "10", positive_int,
           "requests per minute per client IP on collection health"),
    Option("rate_server_health_limit", ("--rate-server-health-limit",), None, "160", positive_int,
           "requests per minute per client IP on /health and /ready"),
    Option("rate_ipv6_prefix", ("--rate-ipv6-prefix",), "BR_RATE_IPV6_PREFIX", "64", ipv6_prefix,
           "IPv6 clients share each rate limit and login budget per network of this prefix length (a host holds a "
           "whole /64); IPv4 clients per address"),
    Option("listen", ("--listen",), None, ":8080", parse_listen,
           "address to listen on: :8080, 127.0.0.1:8080 or [::1]:8080"),
    Option("metrics_token", ("--metrics-token",), "BR_METRICS_TOKEN", "", str,
           "bearer token that GET /metrics requires; with it, /metrics is served on --listen too (empty: only on "
           "--metrics-listen, if set)", secret=True),
    Option("metrics_listen", ("--metrics-listen",), "BR_METRICS_LISTEN", "", parse_optional_listen,
           "a separate address serving only GET /metrics, e.g. 127.0.0.1:9102 (empty: none)"),
    Option("metrics_refresh_interval", ("--metrics-refresh-interval",), "BR_METRICS_REFRESH_INTERVAL", "10s",
           positive_duration, "how often the collection metrics of /metrics are computed from the database (a "
           "scrape serves the last figures; four queries per refresh, whatever the number of collections)"),
    Option("probe_listen", ("--probe-listen",), "BR_PROBE_LISTEN", "", parse_optional_listen,
           "a second address answering GET /health and GET /ready without the health key, for Kubernetes probes "
           "(ready or not, and the names of failed checks; empty: none)"),
    Option("provider", ("-p", "--provider"), "BR_CONFIG_PROVIDER", "filesystem", parse_provider,
           "configuration provider: filesystem (a directory of YAML documents) or kubernetes (custom resources of "
           "the namespace --namespace)"),
    Option("kubeconfig", ("--kubeconfig",), "BR_KUBECONFIG", "", str,
           "kubeconfig file for --provider=kubernetes (default: KUBECONFIG, then in-cluster, then ~/.kube/config)"),
    Option("kube_start_timeout", ("--kube-start-timeout",), "BR_KUBE_START_TIMEOUT", "30s", positive_duration,
           "--provider=kubernetes: how long the first read of the namespace may take before the server exits 1"),
    Option("kube_stale_after", ("--kube-stale-after",), "BR_KUBE_STALE_AFTER", "60s", positive_duration,
           "--provider=kubernetes: /ready reports the configuration not usable once the API server has been "
           "unreachable or refusing for this long (the last configuration read is served meanwhile)"),
    Option("kube_request_timeout", ("--kube-request-timeout",), "BR_KUBE_REQUEST_TIMEOUT", "10s",
           positive_duration, "--provider=kubernetes: the longest a request to the API server may take, from "
           "connecting to the last byte of the answer (watches excepted)"),
    Option("kube_watch_timeout", ("--kube-watch-timeout",), "BR_KUBE_WATCH_TIMEOUT", "60s", positive_duration,
           "--provider=kubernetes: each watch asks the API server to end it after this long and is opened again; "
           "one that hears nothing, not even a bookmark, for 10s longer is cut and counts as a failure"),
    Option("config_local_path", ("--config-local-path",), "BR_CONFIG_LOCAL_PATH", DATA_HOME, str,
           "root of the filesystem configuration ({path}/{namespace}/...)"),
    Option("config_reload_interval", ("--config-reload-interval",), "BR_CONFIG_RELOAD_INTERVAL", "5s",
           positive_duration, "how often the configuration directory is checked for changes"),
    Option("password_check_concurrency", ("--password-check-concurrency",), "BR_PASSWORD_CHECK_CONCURRENCY", "2",
           positive_int, "password verifications running at once (each takes 64 MiB)"),
    Option("password_check_queue", ("--password-check-queue",), "BR_PASSWORD_CHECK_QUEUE", "16", positive_int,
           "logins that may wait for a password verification; more are answered 503 at once"),
    Option("trusted_proxies", ("--trusted-proxies",), "BR_TRUSTED_PROXIES", "", parse_trusted_proxies,
           "comma-separated CIDRs of reverse proxies whose X-Forwarded-For / X-Real-IP are believed "
           "(default: none, the client is the socket's peer)"),
    Option("shutdown_grace", ("--shutdown-grace",), "BR_SHUTDOWN_GRACE", "30s", positive_duration,
           "on SIGTERM, how long uploads and downloads in flight may take to finish before they are aborted"),
    Option("janitor_interval", ("--janitor-interval",), "BR_JANITOR_INTERVAL", "15m", positive_duration,
           "how often leftovers of interrupted uploads are removed from the storage (also at start-up)"),
    Option("upload_lease", ("--upload-lease",), "BR_UPLOAD_LEASE", "45s", positive_duration,
           "an upload in progress renews its lease every third of this; once a server stops renewing (it crashed, "
           "or lost the database), its upload's collection lock and leftovers go to others after this long"),
    Option("verify_interval", ("--verify-interval",), "BR_VERIFY_INTERVAL", "off", duration_or_off,
           "how often every stored version is re-read and its sha256 checked (off: only with --verify)"),
    Option("max_uploads_per_user", ("--max-uploads-per-user",), "BR_MAX_UPLOADS_PER_USER", "8", positive_int,
           "uploads one user may have in progress at once; more are answered 429"),
)


@dataclass(frozen=True)
class Settings:
    namespace: str
    db_hostname: str
    db_user: str
    db_password: str
    db_name: str
    db_port: int
    db_path: str
    jwt_secret_key: str
    jwt_expiry: float
    health_check_key: str
    log_level: str
    log_format: str
    storage_url: str
    use_google_cloud: bool
    storage_health_timeout: float
    storage_io_timeout: float
    http_upload_timeout: float
    http_download_timeout: float
    http_upload_idle_timeout: float
    http_upload_min_rate: int
    http_upload_rate_window: float
    http_idle_timeout: float
    rate_default_limit: int
    rate_auth_limit: int
    rate_collection_health_limit: int
    rate_server_health_limit: int
    rate_ipv6_prefix: int
    listen: tuple
    metrics_token: str
    metrics_listen: Optional[tuple]
    metrics_refresh_interval: float
    probe_listen: Optional[tuple]
    provider: str
    kubeconfig: str
    kube_start_timeout: float
    kube_stale_after: float
    kube_request_timeout: float
    kube_watch_timeout: float
    config_local_path: str
    config_reload_interval: float
    password_check_concurrency: int
    password_check_queue: int
    trusted_proxies: tuple
    shutdown_grace: float
    janitor_interval: float
    upload_lease: float
    verify_interval: float
    max_uploads_per_user: int

    @property
    def storage_url_is_default(self) -> bool:
        return self.storage_url == default_storage_url()


def default_storage_url() -> str:
    return "file://" + os.path.expanduser(f"{DATA_HOME}/data/storage")
