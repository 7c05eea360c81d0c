"""A real Azure Blob service for tests: Azurite (Microsoft's Azure Storage emulator) on 127.0.0.1, from the npm
package scripts/install-azurite.sh installs once into ``$BR_TEST_TOOLS/azurite``.

``AzuriteServer(workdir).start()`` serves the Blob service alone on a free port, with its data in
``workdir/data`` and the emulator's well-known development account (``devstoreaccount1`` and its published key,
which Azurite accepts unless told otherwise); it checks SharedKey and SAS signatures as Azure does. ``stop()`` ends
it. Its log is ``workdir/azurite.log``. ``container(server)`` creates a fresh container through libcloud's stock
driver (not the server's code); ``Blobs`` reads and writes behind the server's back.
"""

import base64
import hashlib
import hmac
import os
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from tests import tool_server
from tests.kube_cluster import free_ports, tools_dir
from tests.support import AZURE_ACCOUNT as ACCOUNT, AZURE_KEY as KEY

TOOLS_HINT = ("no Azurite for the tests on a real Azure Blob service: run scripts/install-azurite.sh (installs it "
              "once from npm, about 20 s, into $BR_TEST_TOOLS/azurite, default "
              "~/.cache/backup-repository/test-tools/azurite; needs Node.js and npm)")


def find_azurite():
    path = os.path.join(tools_dir(), "azurite", "node_modules", ".bin", "azurite-blob")
    return path if os.access(path, os.X_OK) else None


def require_azurite() -> str:
    """find_azurite() for tests: skips when it is missing, fails under BR_TEST_REQUIRE_AZURITE=1 (which `make test`
    and .ci/run set once scripts/install-azurite.sh has run)."""
    return tool_server.require(find_azurite(), "Azurite", TOOLS_HINT, "BR_TEST_REQUIRE_AZURITE")


class AzuriteServer(tool_server.ToolServer):
    name = "azurite"
    log_name = "azurite.log"

    def __init__(self, workdir, program: str = None):
        super().__init__(workdir)
        self.program = program or find_azurite()
        self.port = free_ports(1)[0]
        self.domain = f"127.0.0.1:{self.port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.domain}/{ACCOUNT}"

    def start(self, timeout: float = 30) -> "AzuriteServer":
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        # AZURITE_ACCOUNTS would replace the development account with others
        env = {name: value for name, value in os.environ.items() if name != "AZURITE_ACCOUNTS"}
        return self.launch([self.program, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
                            data, "--silent", "--disableTelemetry"], timeout, env=env, cwd=self.workdir)

    def ready(self) -> bool:
        import requests

        requests.get(f"{self.service_url}?comp=list", timeout=1)  # any answer (403: unsigned): it is listening
        return True

    def storage_url(self, container: str) -> str:
        """The --storage-url of ``container`` on this server, as Go Cloud spells an Azurite URL."""
        return f"azblob://{container}?domain={self.domain}&protocol=http"

    def account_sas(self, permissions: str = "rwdlac", hours: float = 2) -> str:
        """An account shared access signature for the Blob service (version 2018-11-09's string to sign), signed
        with the account key as Azure signs one."""
        expiry = (datetime.now(timezone.utc) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = {"sv": "2018-11-09", "ss": "b", "srt": "sco", "sp": permissions, "se": expiry, "spr": "https,http"}
        to_sign = "\n".join([ACCOUNT, fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "",
                             fields["spr"], fields["sv"], ""])
        signature = hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
        return urlencode({**fields, "sig": base64.b64encode(signature).decode()})


class Blobs:
    """One container of an Azurite, read and written through libcloud's stock Azure driver: what a test does
    behind the server's back."""

    def __init__(self, server: AzuriteServer, container: str):
        from libcloud.storage.providers import get_driver
        from libcloud.storage.types import Provider

        self.container_name = container
        # a host on 127.0.0.1: libcloud's driver puts the account in the path, as Azurite wants
        self.driver = get_driver(Provider.AZURE_BLOBS)(ACCOUNT, KEY, host="127.0.0.1", port=server.port,
                                                       secure=False)

    @classmethod
    def create(cls, server: AzuriteServer) -> "Blobs":
        blobs = cls(server, f"br-test-{uuid.uuid4().hex[:12]}")
        blobs.driver.create_container(blobs.container_name)
        return blobs

    def put(self, name: str, data: bytes):
        self.driver.upload_object_via_stream(iter([data]), self.driver.get_container(self.container_name), name)

    def get(self, name: str) -> bytes:
        return b"".join(self.driver.download_object_as_stream(self.driver.get_object(self.container_name, name)))

    def delete(self, name: str):
        self.driver.delete_object(self.driver.get_object(self.container_name, name))

    def names(self) -> list:
        """Every blob's name, plus ``uncommitted:<name>`` for each name with blocks staged but never committed (an
        upload cut short: Azure's unfinished multipart upload). The listing shows both alike; only the committed
        blob answers a HEAD."""
        from libcloud.storage.types import ObjectDoesNotExistError
        from libcloud.utils.xml import fixxpath

        names, marker = [], None
        while True:
            params = {"restype": "container", "comp": "list", "include": "uncommittedblobs"}
            if marker:
                params["marker"] = marker
            body = self.driver.connection.request(f"/{self.container_name}", params=params).object
            for name in (blob.findtext(fixxpath(xpath="Name")) for blob in body.findall(fixxpath(xpath="Blobs/Blob"))):
                try:
                    self.driver.get_object(self.container_name, name)
                    names.append(name)
                except ObjectDoesNotExistError:
                    names.append(f"uncommitted:{name}")
            marker = body.findtext(fixxpath(xpath="NextMarker"))
            if not marker:
                return sorted(names)
