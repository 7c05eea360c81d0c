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


# --- azblob:// (Go Cloud's azureblob opener) ------------------------------------------------------------------
#: Azurite's well-known development account (published in its documentation; no secret)
AZURITE = {"AZURE_STORAGE_ACCOUNT": "devstoreaccount1",
           "AZURE_STORAGE_KEY": "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                                "K1SZFPTOtr/KBHBeksoGMGw=="}


def azure(url: str, **env):
    """(scheme, host, port, the account's path prefix or None, SAS parameters or None) of the driver ``url`` gives."""
    driver, container = make_driver(parse_storage_url(url), environ={**AZURITE, **env})
    connection = driver.connection
    return (("https" if connection.secure else "http"), connection.host, connection.port,
            connection.account_prefix, getattr(connection, "sas_params", None), container)


@pytest.mark.parametrize("url, env, expected", [
    ("azblob://backups", {}, ("https", "devstoreaccount1.blob.core.windows.net", 443, None)),
    # Azurite: a domain on 127.0.0.1 or localhost puts the account in the path, as Go Cloud does
    ("azblob://backups?domain=127.0.0.1:10000&protocol=http", {}, ("http", "127.0.0.1", 10000, "devstoreaccount1")),
    ("azblob://backups?domain=azurite:10000&protocol=http&localemu=true", {},
     ("http", "azurite", 10000, "devstoreaccount1")),
    ("azblob://backups", {"AZURE_STORAGE_DOMAIN": "localhost:10000", "AZURE_STORAGE_PROTOCOL": "http"},
     ("http", "localhost", 10000, "devstoreaccount1")),
    ("azblob://backups", {"AZURE_STORAGE_DOMAIN": "azurite:10000", "AZURE_STORAGE_PROTOCOL": "http",
                          "AZURE_STORAGE_IS_LOCAL_EMULATOR": "true"}, ("http", "azurite", 10000, "devstoreaccount1")),
    # another cloud: the account stays in the host name
    ("azblob://backups?domain=blob.core.chinacloudapi.cn", {},
     ("https", "devstoreaccount1.blob.core.chinacloudapi.cn", 443, None)),
    ("azblob://backups?domain=backups.azureedge.net&cdn=true", {}, ("https", "backups.azureedge.net", 443, None)),
    ("azblob://backups?storage_account=other", {}, ("https", "other.blob.core.windows.net", 443, None)),
    # URL parameters win over the variables
    ("azblob://backups?protocol=https&domain=127.0.0.1:10001", {"AZURE_STORAGE_PROTOCOL": "http"},
     ("https", "127.0.0.1", 10001, "devstoreaccount1")),
])
def test_azblob_urls_address_the_service_as_go_cloud_does(url, env, expected):
    assert azure(url, **env)[:4] == expected
    assert azure(url, **env)[5] == "backups"


def test_azblob_with_a_sas_token_signs_nothing_and_sends_the_token():
    env = {"AZURE_STORAGE_KEY": "", "AZURE_STORAGE_SAS_TOKEN": "?sv=2018-11-09&ss=b&srt=sco&sp=rwdlac&sig=a%2Bb%3D"}
    sas = azure("azblob://backups", **env)[4]
    assert dict(sas) == {"sv": "2018-11-09", "ss": "b", "srt": "sco", "sp": "rwdlac", "sig": "a+b="}
    # with both, the key is used (Go Cloud's order)
    assert azure("azblob://backups", AZURE_STORAGE_SAS_TOKEN="sv=2018-11-09&sig=x")[4] is None


@pytest.mark.parametrize("env, message", [
    ({"AZURE_STORAGE_ACCOUNT": ""}, "AZURE_STORAGE_ACCOUNT"),
    ({"AZURE_STORAGE_KEY": ""}, "AZURE_STORAGE_KEY .* or AZURE_STORAGE_SAS_TOKEN"),
    ({"AZURE_STORAGE_KEY": "not base64!"}, "AZURE_STORAGE_KEY is not an Azure access key"),
    ({"AZURE_STORAGE_IS_CDN": "yes please"}, "AZURE_STORAGE_IS_CDN must be true or false"),
    ({"AZURE_STORAGE_PROTOCOL": "ftp"}, "invalid protocol 'ftp'"),
    ({"AZURE_STORAGE_DOMAIN": "127.0.0.1:port"}, "the port is not a number"),
])
def test_azblob_without_usable_credentials_or_address_says_what_to_fix(env, message):
    with pytest.raises(StorageConfigError, match=message):
        make_driver(parse_storage_url("azblob://backups"), environ={**AZURITE, **env})


@pytest.mark.parametrize("url, message", [
    ("azblob://", "the container name is missing"),
    ("azblob://backups?endpoint=127.0.0.1:10000", "unknown parameter 'endpoint' for azblob:// storage"),
    ("azblob://backups?localemu=maybe", "localemu must be true or false"),
    ("azblob://backups?protocol=ftp", "protocol must be http or https"),
])
def test_unusable_azblob_urls(url, message):
    with pytest.raises(StorageConfigError, match=message):
        parse_storage_url(url)


@pytest.mark.parametrize("lock", ["governance", "compliance"])
def test_object_lock_is_refused_on_azblob_with_the_reason(lock):
    with pytest.raises(StorageConfigError) as refused:
        parse_storage_url(f"azblob://backups?domain=127.0.0.1:10000&protocol=http&objectLock={lock}")
    message = str(refused.value)
    assert "objectLock is not available on azblob:// storage" in message
    assert "immutability" in message and "s3:// with S3 Object Lock" in message


def test_azblob_location_describes_itself():
    local = parse_storage_url("azblob://backups?domain=127.0.0.1:10000")
    assert local.describe() == "azblob://backups at 127.0.0.1:10000"
    assert parse_storage_url("azblob://backups").describe() == "azblob://backups"


def documented_azure_forms() -> list:
    """The rows of docs/configuration.md's table of azblob:// forms: (URL, environment, service address)."""
    import re

    from tests.support import ROOT

    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("### Azure Blob Storage", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(azblob://[^`]*)` \| `([^`]*)` \| `([^`]*)` \|$", section, re.M)
    return [(url, dict(pair.split("=", 1) for pair in env.split()), address) for url, env, address in rows]


def test_every_documented_azblob_form_reaches_the_documented_address():
    forms = documented_azure_forms()
    assert len(forms) >= 7
    for url, env, address in forms:
        driver, _ = make_driver(parse_storage_url(url), environ={"AZURE_STORAGE_KEY": AZURITE["AZURE_STORAGE_KEY"],
                                                                 **env})
        assert driver.address.url == address, url
        connection = driver.connection
        prefix = f"/{connection.account_prefix}" if connection.account_prefix else ""
        port = "" if connection.port == (443 if connection.secure else 80) else f":{connection.port}"
        assert f"{'https' if connection.secure else 'http'}://{connection.host}{port}{prefix}" == address, url
