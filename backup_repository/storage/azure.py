"""Azure Blob Storage (``azblob://container``) through libcloud's Azure Blobs driver, addressed the way Go Cloud's
azureblob opener addresses it (docs/configuration.md#azure-blob-storage).

Go Cloud builds a service URL from the account name, a domain and a protocol: ``https://ACCOUNT.DOMAIN`` in general,
``PROTOCOL://DOMAIN/ACCOUNT`` for a local emulator (``localemu``, or a domain starting with ``localhost`` or
``127.0.0.1``: Azurite's ``http://127.0.0.1:10000/devstoreaccount1``), ``PROTOCOL://DOMAIN`` for a CDN. libcloud's
driver guesses the form from the host it is given; ``AzureBlobDriver`` is told it instead, so that every form Go Cloud
accepts reaches the same address. Requests are signed with the account key (SharedKey), or carry a shared access
signature (SAS) in their query.

Writes are block blobs: the body goes up in blocks (``Put Block``, several at a time: storage/cloud.py's
``AzureUpload``) and the blob appears only when its block list is committed at the end (``Put Block List``), so a
failed upload leaves nothing visible. The blocks it staged are dropped by ``ex_delete_staged`` (a Delete Blob on the name: the only way the service offers; the store itself would drop
them after a week).
"""

import base64
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from libcloud.common.azure import AZURE_TIME_FORMAT, AzureRawResponse
from libcloud.utils.py3 import httplib
from libcloud.storage.drivers.azure_blobs import AzureBlobsConnection, AzureBlobsStorageDriver

DEFAULT_DOMAIN = "blob.core.windows.net"


@dataclass(frozen=True)
class ServiceAddress:
    """Where an account's Blob service answers: ``host:port`` over http or https, the account name either in the
    host (Azure: ``ACCOUNT.blob.core.windows.net``, already part of ``host``) or as the first path segment (an
    emulator), or nowhere (a CDN)."""

    account: str
    host: str
    port: int
    secure: bool
    account_in_path: bool

    @property
    def url(self) -> str:
        scheme = "https" if self.secure else "http"
        default = 443 if self.secure else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{scheme}://{netloc}" + (f"/{self.account}" if self.account_in_path else "")


def service_address(account: str, domain: str = "", protocol: str = "", cdn: bool = False,
                    local_emulator: bool = False) -> ServiceAddress:
    """Go Cloud's ``NewServiceURL``: the service of ``account`` at ``domain`` (default blob.core.windows.net) over
    ``protocol`` (default https). Raises ValueError on a protocol other than http or https, or a domain that is no
    ``host[:port]``."""
    domain = domain or DEFAULT_DOMAIN
    protocol = protocol or "https"
    if protocol not in ("http", "https"):
        raise ValueError(f"invalid protocol {protocol!r}: http or https")
    secure = protocol == "https"
    account_in_path = local_emulator or domain.startswith(("127.0.0.1", "localhost"))
    netloc = domain if account_in_path or cdn else f"{account}.{domain}"
    parsed = urlsplit("//" + netloc)
    try:
        port = parsed.port or (443 if secure else 80)
    except ValueError:
        raise ValueError(f"domain {domain!r}: the port is not a number") from None
    if not parsed.hostname or parsed.path or parsed.query:
        raise ValueError(f"domain {domain!r}: expected a host name, with an optional :port")
    return ServiceAddress(account, parsed.hostname, port, secure, account_in_path)


class PartialContent(AzureRawResponse):
    """libcloud's raw Azure response takes 206 Partial Content for a failure, and reads the whole body to describe
    it: every ranged read held all its bytes in memory before the first one was passed on. A range is an answer."""

    def success(self):
        return self.status in (httplib.OK, httplib.CREATED, httplib.ACCEPTED, httplib.PARTIAL_CONTENT)


class KeyConnection(AzureBlobsConnection):
    """A connection whose requests are signed with the account key (SharedKey)."""

    rawResponseCls = PartialContent


class SasConnection(KeyConnection):
    """A connection whose requests carry a shared access signature in their query instead of a SharedKey header."""

    def __init__(self, *args, sas_params=(), **kwargs):
        self.sas_params = list(sas_params)
        super().__init__(*args, **kwargs)

    def add_default_params(self, params):
        params.update(self.sas_params)
        return params

    def pre_connect_hook(self, params, headers):
        headers = dict(headers)
        headers["x-ms-date"] = time.strftime(AZURE_TIME_FORMAT, time.gmtime())
        headers["x-ms-version"] = self.API_VERSION
        headers.pop("Host", None)
        return params, headers


class AzureBlobDriver(AzureBlobsStorageDriver):
    """libcloud's Azure Blobs driver on a ``ServiceAddress``, authorised by the account key or by a SAS token."""

    def __init__(self, address: ServiceAddress, key: Optional[str] = None, sas_token: Optional[str] = None,
                 **kwargs):
        self.address = address
        self._sas_params = parse_qsl(sas_token.lstrip("?"), keep_blank_values=True) if sas_token else None
        self.connectionCls = SasConnection if self._sas_params is not None else KeyConnection
        super().__init__(address.account, key or "", secure=address.secure, host=address.host, port=address.port,
                         **kwargs)

    def _ex_connection_class_kwargs(self):
        kwargs: dict[str, object] = {"host": self.address.host}
        if self.address.account_in_path:
            kwargs["account_prefix"] = self.address.account
        if self._sas_params is not None:
            kwargs["sas_params"] = self._sas_params
        return kwargs

    def ex_delete_staged(self, container, object_name: str) -> bool:
        """Delete Blob on ``object_name``: drops the blocks an upload staged but never committed (and a committed
        blob of that name, so call it only on a name nothing else owns). True when the store had something."""
        response = self.connection.request(self._get_object_path(container, object_name), method="DELETE")
        if response.status not in (httplib.ACCEPTED, httplib.NOT_FOUND):
            response.parse_error()
        return response.status == httplib.ACCEPTED

    def ex_put_block(self, container, object_name: str, number: int, body, length: int) -> str:
        """Stage block ``number`` of ``object_name`` (``body``: bytes, or an iterable of pieces with a length); its
        id, for ``ex_commit_blocks``. Ids are the block's number, base64 of 10 digits: the same length for every
        block of a blob, as the service requires."""
        block_id = base64.b64encode(b"%010d" % number).decode()
        response = self.connection.request(
            self._get_object_path(container, object_name), method="PUT", data=body,
            params={"comp": "block", "blockid": block_id}, headers={"Content-Length": str(length)})
        if response.status != httplib.CREATED:
            raise IOError(f"the store refused block {number} of {object_name}: HTTP {response.status}")
        return block_id

    def ex_commit_blocks(self, container, object_name: str, block_ids: list) -> None:
        """Put Block List: the blob becomes the staged blocks ``block_ids``, in that order (none: an empty blob)."""
        body = ('<?xml version="1.0" encoding="utf-8"?><BlockList>'
                + "".join(f"<Uncommitted>{escape(block_id)}</Uncommitted>" for block_id in block_ids)
                + "</BlockList>").encode()
        response = self.connection.request(
            self._get_object_path(container, object_name), method="PUT", data=body, params={"comp": "blocklist"},
            headers={"Content-Length": str(len(body)), "x-ms-blob-content-type": "application/octet-stream"})
        if response.status != httplib.CREATED:
            raise IOError(f"the store refused the block list of {object_name}: HTTP {response.status}")
