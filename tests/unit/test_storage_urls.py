import pytest

from backup_repository.storage.gcs import emulator_endpoint, make_client
from backup_repository.storage.urls import StorageConfigError, make_driver, parse_storage_url


def test_file_url():
    loc = parse_storage_url("file:///var/lib/backups")
    assert (loc.scheme, loc.bucket) == ("file", "/var/lib/backups")


def test_s3_url_with_gocloud_options():
    loc = parse_storage_url("s3://mybucket?endpoint=localhost:9000&disableSSL=true&s3ForcePathStyle=true"
                            "&region=eu-central-1")
    assert (loc.scheme, loc.bucket) == ("s3", "mybucket")
    assert loc.options == {"endpoint": "localhost:9000", "disableSSL": "true", "s3ForcePathStyle": "true",
                           "region": "eu-central-1"}
    driver, container = make_driver(loc, environ={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert container == "mybucket"
    assert (driver.connection.host, driver.connection.port, driver.connection.secure) == ("localhost", 9000, False)
    assert driver.region_name == "eu-central-1"


def test_s3_without_credentials_says_what_is_missing():
    with pytest.raises(StorageConfigError, match="AWS_ACCESS_KEY_ID"):
        make_driver(parse_storage_url("s3://b?region=eu-central-1"), environ={})


def test_google_cloud_forms():
    assert parse_storage_url("gs://bucket").scheme == "gs"
    bare = parse_storage_url("my-bucket", use_google_cloud=True)
    assert (bare.scheme, bare.bucket) == ("gs", "my-bucket")
    with pytest.raises(StorageConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        make_client(environ={})
    with pytest.raises(StorageConfigError, match="cannot read GOOGLE_APPLICATION_CREDENTIALS file /nonexistent"):
        make_client(environ={"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"})


@pytest.mark.parametrize("variable, endpoint", [("127.0.0.1:4443", "http://127.0.0.1:4443"),
                                                ("http://gcs:4443/", "http://gcs:4443"),
                                                ("https://gcs.example", "https://gcs.example")])
def test_the_gcs_emulator_variable_as_google_clients_read_it(variable, endpoint):
    """STORAGE_EMULATOR_HOST: host:port is plain HTTP (as the Go client, and so Go Cloud, reads it); no credentials
    are needed."""
    assert emulator_endpoint({"STORAGE_EMULATOR_HOST": variable}) == endpoint
    client = make_client(environ={"STORAGE_EMULATOR_HOST": variable})
    assert client._connection.API_BASE_URL == endpoint
    assert emulator_endpoint({}) is None


@pytest.mark.parametrize("url", ["", "ftp://x", "file://relative/dir", "file:///", "s3://", "my-bucket"])
def test_unusable_urls(url):
    with pytest.raises(StorageConfigError):
        parse_storage_url(url)
