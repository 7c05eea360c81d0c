"""Flags and BR_* variables into Settings; invalid values exit 2 naming the flag and the value."""

import shlex

import pytest

from backup_repository.cli import parse_settings
from backup_repository.settings import OPTIONS, Settings

TYPICAL = (
    "--db-hostname=127.0.0.1 --db-port=5432 --db-user=postgres --db-password=postgres --db-name=postgres "
    "--health-check-key=changeme --jwt-secret-key=\"secret key\" --storage-io-timeout=5m --listen=:8080 "
    "--provider=filesystem --config-local-path=./config "
    "--storage-url=\"s3://mybucket?endpoint=localhost:9000&disableSSL=true&s3ForcePathStyle=true"
    "&region=eu-central-1\""
)


def test_the_contracts_typical_command_line():
    _, s = parse_settings(shlex.split(TYPICAL), environ={})
    assert (s.db_hostname, s.db_port, s.db_user, s.db_password, s.db_name) == (
        "127.0.0.1", 5432, "postgres", "postgres", "postgres")
    assert s.health_check_key == "changeme" and s.jwt_secret_key == "secret key"
    assert s.storage_io_timeout == 300 and s.listen == ("", 8080)
    assert s.provider == "filesystem" and s.config_local_path == "./config"
    assert s.storage_url.startswith("s3://mybucket?endpoint=localhost:9000&")


def test_space_separated_form_and_short_flags():
    _, s = parse_settings(["--db-port", "6543", "-s", "k", "-k", "h", "-n", "ns", "-p", "filesystem",
                           "--listen", "[::1]:9090"], environ={})
    assert (s.db_port, s.jwt_secret_key, s.health_check_key, s.namespace, s.listen) == (
        6543, "k", "h", "ns", ("::1", 9090))


def test_environment_variables_and_flag_precedence():
    env = {o.env: v for o, v in [
        (o, {"BR_DB_HOSTNAME": "db", "BR_DB_USERNAME": "u", "BR_DB_PASSWORD": "p", "BR_DB_NAME": "n",
             "BR_DB_PORT": "5433", "BR_JWT_SECRET_KEY": "j", "BR_HEALTH_CHECK_KEY": "h", "BR_LOG_LEVEL": "error",
             "BR_STORAGE_DRIVER_URL": "file:///srv", "BR_USE_GOOGLE_CLOUD": "true",
             "BR_STORAGE_HEALTH_TIMEOUT": "7s", "BR_STORAGE_IO_TIMEOUT": "1h", "BR_HTTP_UPLOAD_TIMEOUT": "10m",
             "BR_HTTP_DOWNLOAD_TIMEOUT": "20m", "BR_HTTP_IDLE_TIMEOUT": "30s",
             "BR_HTTP_UPLOAD_IDLE_TIMEOUT": "90s", "BR_KUBECONFIG": "/etc/kube.conf", "BR_KUBE_START_TIMEOUT": "9s",
             "BR_KUBE_STALE_AFTER": "2m", "BR_KUBE_REQUEST_TIMEOUT": "4s", "BR_KUBE_WATCH_TIMEOUT": "30s",
             "BR_CONFIG_PROVIDER": "filesystem",
             "BR_CONFIG_LOCAL_PATH": "/etc/br", "BR_DB_PATH": "/var/lib/br.db", "BR_JWT_EXPIRY": "1h",
             "BR_CONFIG_RELOAD_INTERVAL": "2s", "BR_PASSWORD_CHECK_CONCURRENCY": "3",
             "BR_PASSWORD_CHECK_QUEUE": "5", "BR_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
             "BR_MAX_UPLOADS_PER_USER": "2", "BR_SHUTDOWN_GRACE": "5s", "BR_JANITOR_INTERVAL": "1m",
             "BR_VERIFY_INTERVAL": "1h", "BR_PROBE_LISTEN": ":8081",
             "BR_METRICS_TOKEN": "mt", "BR_METRICS_LISTEN": "127.0.0.1:9102", "BR_LOG_FORMAT": "json",
             "BR_METRICS_REFRESH_INTERVAL": "3s", "BR_UPLOAD_LEASE": "20s",
                 "BR_RATE_IPV6_PREFIX": "48", "BR_HTTP_UPLOAD_MIN_RATE": "0",
                 "BR_HTTP_UPLOAD_RATE_WINDOW": "2m"}.get(o.env))
        for o in OPTIONS if o.env]}
    assert None not in env.values(), "every BR_* variable is exercised"
    _, s = parse_settings([], environ=env)
    assert (s.db_hostname, s.db_user, s.db_password, s.db_name, s.db_port) == ("db", "u", "p", "n", 5433)
    assert (s.jwt_secret_key, s.health_check_key, s.log_level, s.storage_url) == ("j", "h", "error", "file:///srv")
    assert s.use_google_cloud is True
    assert (s.storage_health_timeout, s.storage_io_timeout, s.http_upload_timeout, s.http_download_timeout) == (
        7, 3600, 600, 1200)
    assert (s.config_local_path, s.db_path, s.jwt_expiry, s.config_reload_interval,
            s.password_check_concurrency) == ("/etc/br", "/var/lib/br.db", 3600, 2, 3)
    assert (s.password_check_queue, s.max_uploads_per_user, s.http_idle_timeout) == (5, 2, 30)
    assert s.http_upload_idle_timeout == 90
    assert (s.kubeconfig, s.kube_start_timeout, s.kube_stale_after) == ("/etc/kube.conf", 9, 120)
    assert (s.kube_request_timeout, s.kube_watch_timeout) == (4, 30)
    assert (s.shutdown_grace, s.janitor_interval, s.verify_interval, s.upload_lease) == (5, 60, 3600, 20)
    assert (s.rate_ipv6_prefix, s.http_upload_min_rate, s.http_upload_rate_window) == (48, 0, 120)
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    assert s.probe_listen == ("", 8081)
    assert (s.metrics_token, s.metrics_listen, s.metrics_refresh_interval) == ("mt", ("127.0.0.1", 9102), 3)
    assert s.log_format == "json"
    assert parse_settings([], environ={})[1].probe_listen is None
    _, s = parse_settings(["--db-port=1234", "--use-google-cloud=false"], environ=env)
    assert s.db_port == 1234 and s.use_google_cloud is False


def test_defaults():
    _, s = parse_settings([], environ={})
    assert s.namespace == "backup-repository" and s.db_hostname == "localhost" and s.db_port == 5432
    assert s.db_user == "" and s.listen == ("", 8080) and s.provider == "filesystem"
    assert s.storage_health_timeout == 5 and s.storage_io_timeout == 7200
    assert s.http_upload_timeout == s.http_download_timeout == 10800
    assert s.http_upload_idle_timeout == 300
    assert (s.rate_default_limit, s.rate_auth_limit, s.rate_collection_health_limit,
            s.rate_server_health_limit) == (5, 10, 10, 160)
    assert s.jwt_expiry == 87600 * 3600 and s.log_level == "debug"
    assert s.storage_url.startswith("file:///") and s.storage_url.endswith(".backup-repository/data/storage")
    assert s.storage_url_is_default


@pytest.mark.parametrize("argv, env, fragment", [
    (["--storage-io-timeout=5x"], {}, "invalid value '5x' for --storage-io-timeout"),
    (["--log-level=loud"], {}, "invalid value 'loud' for --log-level"),
    (["--db-port=70000"], {}, "invalid value '70000' for --db-port"),
    (["--listen=:99999"], {}, "invalid value ':99999' for --listen"),
    (["--listen=nonsense"], {}, "invalid value 'nonsense' for --listen"),
    (["--provider=etcd"], {}, "invalid value 'etcd' for --provider"),
    (["--rate-auth-limit=0"], {}, "invalid value '0' for --rate-auth-limit"),
    ([], {"BR_HTTP_UPLOAD_TIMEOUT": "soon"}, "invalid value 'soon' for --http-upload-timeout (from BR_HTTP_UPLOAD_TIMEOUT)"),
    ([], {"BR_USE_GOOGLE_CLOUD": "maybe"}, "--use-google-cloud (from BR_USE_GOOGLE_CLOUD)"),
    (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
])
def test_invalid_values_exit_2_naming_flag_and_value(capsys, argv, env, fragment):
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv, environ=env)
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err


def test_settings_fields_match_the_option_table():
    assert [o.dest for o in OPTIONS] == list(Settings.__dataclass_fields__)
