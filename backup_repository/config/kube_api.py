"""A small client of the Kubernetes API, for the Kubernetes provider (docs/kubernetes.md#connecting).

It reads the cluster and credentials the way kubectl does — ``--kubeconfig``, else ``KUBECONFIG`` (several files
joined by ``:``, the first to set a name wins), else the pod's service account, else ``~/.kube/config``; the
current context's cluster and user; tokens, token files (read again as the kubelet rotates them), client
certificates (files or inline data), basic credentials, exec plugins (``client.authentication.k8s.io`` v1,
v1beta1, v1alpha1: run again when their credential expires or is refused) and the ``id-token`` of an ``oidc``
auth-provider — and speaks HTTP/1.1 over asyncio's streams, so that every request is bounded in time and a watch
that has heard nothing for too long is cut rather than waited on forever.

A library client was the alternative; the one that reads all of the above costs ~45 MiB of memory to import
(docs/performance.md#configuration-at-scale), this module nothing beyond the standard library and PyYAML.
"""

import asyncio
import base64
import datetime
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import quote, urlencode, urlsplit

import yaml

#: Where a pod finds its service account (token, CA, namespace).
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Seconds a token file's contents are used before it is read again (client-go reads it every minute).
TOKEN_FILE_REREAD = 60.0
#: Seconds before an exec plugin's credential expires that it is asked for a new one.
EXPIRY_MARGIN = 10.0
#: Seconds an exec plugin may take.
EXEC_TIMEOUT = 30.0
#: Largest answer to a request that is not a watch (a page of a list): 64 MiB.
MAX_ANSWER = 64 << 20


class ConfigError(Exception):
    """The kubeconfig (or the pod's service account) cannot be used; the message says why."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: bytes = b""):
        self.status, self.reason = status, reason
        self.message = ""
        self.details: dict = {}
        try:
            answer = json.loads(body or b"{}")
            if isinstance(answer, dict):
                self.message = str(answer.get("message") or "")
                details = answer.get("details")
                self.details = details if isinstance(details, dict) else {}
        except ValueError:
            pass
        super().__init__(f"{status} {reason}" + (f": {self.message}" if self.message else ""))


class Unanswered(Exception):
    """The API server did not answer (or stopped talking) within the time given."""


@dataclass
class Connection:
    """Where the API server is and how to be let in."""

    host: str
    port: int
    prefix: str  # a path the server's URL carries before /api, usually ""
    tls: Optional[ssl.SSLContext]
    server_name: str  # the name the server's certificate is checked against
    credentials: "Credentials"


# --- credentials -------------------------------------------------------------------------------------------


class Credentials:
    """Adds what identifies the client to a request; ``refused()`` after a 401 makes it fetch them anew once."""

    async def headers(self) -> dict:
        return {}

    async def certificate(self) -> Optional[tuple]:
        """(certificate PEM, key PEM) obtained at run time (an exec plugin's), else None; the same tuple object
        for as long as it is the same certificate."""
        return None

    def refused(self) -> bool:
        """The API server refused the credentials: True when newer ones may exist (then the request is retried)."""
        return False


class Token(Credentials):
    def __init__(self, token: str):
        self._header = {"Authorization": f"Bearer {token.strip()}"}

    async def headers(self) -> dict:
        return self._header


class Basic(Credentials):
    def __init__(self, username: str, password: str):
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._header = {"Authorization": f"Basic {pair}"}

    async def headers(self) -> dict:
        return self._header


class TokenFile(Credentials):
    """A token read from a file that is replaced while the server runs (a pod's projected service-account token
    is renewed by the kubelet): read again every TOKEN_FILE_REREAD seconds and after a 401."""

    def __init__(self, path: str):
        self.path = path
        self._token: Optional[str] = None
        self._read_at = 0.0

    async def headers(self) -> dict:
        if self._token is None or time.monotonic() - self._read_at > TOKEN_FILE_REREAD:
            try:
                with open(self.path, encoding="utf-8") as f:
                    self._token = f.read().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file {self.path}: {exc.strerror}") from None
            self._read_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    def refused(self) -> bool:
        fresh = time.monotonic() - self._read_at < 1.0
        self._token = None
        return not fresh


class ExecPlugin(Credentials):
    """A credential plugin (``users[].user.exec``): run, its ExecCredential kept until it expires or is refused."""

    VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1",
                "client.authentication.k8s.io/v1alpha1")

    def __init__(self, spec: dict, base_dir: str, server: str, ca_data: Optional[str]):
        self.api_version = spec.get("apiVersion") or ""
        if self.api_version not in self.VERSIONS:
            raise ConfigError(f"the exec plugin's apiVersion {self.api_version!r} is not one of "
                              f"{', '.join(self.VERSIONS)}")
        command = spec.get("command")
        if not isinstance(command, str) or not command:
            raise ConfigError("the exec plugin names no command")
        if os.sep in command and not os.path.isabs(command):
            command = os.path.join(base_dir, command)  # relative to the kubeconfig, as kubectl reads it
        self.argv = [command, *[str(arg) for arg in spec.get("args") or ()]]
        self.env = {str(item.get("name")): str(item.get("value", "")) for item in spec.get("env") or ()
                    if isinstance(item, dict)}
        self.install_hint = str(spec.get("installHint") or "").strip()
        self.cluster = {"server": server, **({"certificate-authority-data": ca_data} if ca_data else {})} \
            if spec.get("provideClusterInfo") else None
        self._status: Optional[dict] = None
        self._expires: Optional[float] = None
        self._certificate: Optional[tuple[bytes, bytes]] = None
        self._lock = asyncio.Lock()

    async def _run(self):
        spec: dict[str, object] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        credential = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(credential)}
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            hint = f" ({self.install_hint})" if self.install_hint else ""
            raise ConfigError(f"cannot run the exec plugin {self.argv[0]}: {exc.strerror}{hint}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise ConfigError(f"the exec plugin {self.argv[0]} did not answer within {EXEC_TIMEOUT:g}s") from None
        if process.returncode != 0:
            said = " ".join(err.decode(errors="replace").split())[-300:]
            raise ConfigError(f"the exec plugin {self.argv[0]} exited with {process.returncode}: {said}")
        try:
            status = json.loads(out)["status"]
            if not isinstance(status, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"the exec plugin {self.argv[0]} printed no ExecCredential with a status") from None
        if not status.get("token") and not (status.get("clientCertificateData") and status.get("clientKeyData")):
            raise ConfigError(f"the exec plugin {self.argv[0]} gave neither a token nor a client certificate")
        expires = status.get("expirationTimestamp")
        self._expires = _parse_time(expires) if expires else None
        self._status = status
        self._certificate = ((status["clientCertificateData"].encode(), status["clientKeyData"].encode())
                             if status.get("clientCertificateData") else None)

    def _fresh(self) -> bool:
        return self._status is not None and (self._expires is None or time.time() < self._expires - EXPIRY_MARGIN)

    async def _ensure(self):
        async with self._lock:
            if not self._fresh():
                await self._run()

    async def headers(self) -> dict:
        await self._ensure()
        token = (self._status or {}).get("token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def certificate(self) -> Optional[tuple]:
        if self._status is None:  # else headers() has just made sure it is fresh
            await self._ensure()
        return self._certificate

    def refused(self) -> bool:
        self._status = None
        return True


# --- the kubeconfig ----------------------------------------------------------------------------------------


def load(kubeconfig: str = "", environ=None, service_account: str = SERVICE_ACCOUNT) -> Connection:
    """The Connection of ``--kubeconfig``, else of KUBECONFIG, else of the pod's service account, else of
    ~/.kube/config. Raises ConfigError naming what is wrong."""
    environ = os.environ if environ is None else environ
    paths = kubeconfig or environ.get("KUBECONFIG", "")
    if not paths and environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(environ, service_account)
    if not paths:
        paths = os.path.expanduser("~/.kube/config")
    return from_files([path for path in paths.split(os.pathsep) if path])


def in_cluster(environ, service_account: str = SERVICE_ACCOUNT) -> Connection:
    host, port = environ.get("KUBERNETES_SERVICE_HOST", ""), environ.get("KUBERNETES_SERVICE_PORT", "443")
    token = os.path.join(service_account, "token")
    if not os.path.exists(token):
        raise ConfigError(f"running in a pod (KUBERNETES_SERVICE_HOST is set) but {token} does not exist: is "
                          "automountServiceAccountToken off?")
    ca = os.path.join(service_account, "ca.crt")
    context = ssl.create_default_context(cafile=ca if os.path.exists(ca) else None)
    return Connection(host.strip("[]"), int(port), "", context, host.strip("[]"), TokenFile(token))


def from_files(paths: list) -> Connection:
    """Merge the kubeconfig files as kubectl does (the first file to define a name, or current-context, wins)."""
    named: dict[str, dict] = {"clusters": {}, "users": {}, "contexts": {}}
    current, bases = None, {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                document = yaml.safe_load(f) or {}
        except FileNotFoundError:
            if len(paths) == 1:
                raise ConfigError(f"the kubeconfig {path} does not exist") from None
            continue
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the kubeconfig {path}: {' '.join(str(exc).split())}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"the kubeconfig {path} is not a mapping")
        for section in named:
            for item in document.get(section) or ():
                if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in named[section]:
                    named[section][item["name"]] = item.get(section[:-1]) or {}
                    bases[(section, item["name"])] = os.path.dirname(os.path.abspath(path))
        current = current or document.get("current-context")
    where = " and ".join(paths)
    if not current:
        raise ConfigError(f"the kubeconfig {where} sets no current-context")
    if current not in named["contexts"]:
        raise ConfigError(f"the kubeconfig {where} has no context {current!r} (its current-context)")
    context = named["contexts"][current]
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if cluster_name not in named["clusters"]:
        raise ConfigError(f"the context {current!r} names the cluster {cluster_name!r}, which {where} does not define")
    cluster, user = named["clusters"][cluster_name], named["users"].get(user_name) or {}
    if user_name and user_name not in named["users"]:
        raise ConfigError(f"the context {current!r} names the user {user_name!r}, which {where} does not define")
    return _connection(cluster, bases[("clusters", cluster_name)], user,
                       bases.get(("users", user_name), bases[("clusters", cluster_name)]))


def _connection(cluster: dict, cluster_dir: str, user: dict, user_dir: str) -> Connection:
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ConfigError("the cluster of the current context has no server")
    if cluster.get("proxy-url"):
        raise ConfigError("the cluster's proxy-url is not supported: reach the API server directly")
    url = urlsplit(server)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ConfigError(f"the cluster's server {server!r} is not an https:// URL")
    context = None
    if url.scheme == "https":
        if cluster.get("insecure-skip-tls-verify"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            context = ssl.create_default_context(cadata=_decoded(cluster["certificate-authority-data"],
                                                                 "certificate-authority-data").decode("ascii"))
        elif cluster.get("certificate-authority"):
            context = ssl.create_default_context(cafile=_path(cluster["certificate-authority"], cluster_dir))
        else:
            context = ssl.create_default_context()
        certificate = _client_certificate(user, user_dir)
        if certificate is not None:
            _load_certificate(context, *certificate)
    credentials = _credentials(user, user_dir, server, cluster.get("certificate-authority-data"))
    return Connection(url.hostname, url.port or (443 if url.scheme == "https" else 80), url.path.rstrip("/"),
                      context, cluster.get("tls-server-name") or url.hostname, credentials)


def _credentials(user: dict, base_dir: str, server: str, ca_data) -> Credentials:
    if user.get("token"):
        return Token(str(user["token"]))
    if user.get("tokenFile"):
        return TokenFile(_path(user["tokenFile"], base_dir))
    if isinstance(user.get("exec"), dict):
        return ExecPlugin(user["exec"], base_dir, server, ca_data)
    provider = user.get("auth-provider")
    if isinstance(provider, dict):
        settings = provider.get("config") or {}
        if provider.get("name") == "oidc" and settings.get("id-token"):
            return Token(str(settings["id-token"]))
        raise ConfigError(f"the auth-provider {provider.get('name')!r} is not supported: use an exec plugin "
                          "(kubectl's own advice), a token or a client certificate")
    if user.get("username") and user.get("password"):
        return Basic(str(user["username"]), str(user["password"]))
    return Credentials()  # a client certificate, or anonymous


def _client_certificate(user: dict, base_dir: str):
    """(certificate PEM, key PEM) of the user, from inline data or files; None when it has none."""
    if user.get("client-certificate-data") or user.get("client-certificate"):
        certificate = (_decoded(user["client-certificate-data"], "client-certificate-data")
                       if user.get("client-certificate-data") else _read(user["client-certificate"], base_dir))
        if user.get("client-key-data"):
            key = _decoded(user["client-key-data"], "client-key-data")
        elif user.get("client-key"):
            key = _read(user["client-key"], base_dir)
        else:
            raise ConfigError("the user has a client certificate but no client key")
        return certificate, key
    return None


def _load_certificate(context: ssl.SSLContext, certificate: bytes, key: bytes):
    """ssl loads certificates from files only: they pass through a private temporary file, removed at once."""
    with tempfile.TemporaryDirectory(prefix="backup-repository-") as directory:
        path = os.path.join(directory, "client.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(certificate.rstrip(b"\n") + b"\n" + key)
        try:
            context.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise ConfigError(f"the client certificate or key cannot be used: {exc.reason or exc}") from None


def _path(value, base_dir: str) -> str:
    value = os.path.expanduser(str(value))
    return value if os.path.isabs(value) else os.path.join(base_dir, value)


def _read(value, base_dir: str) -> bytes:
    path = _path(value, base_dir)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _decoded(value, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError:
        raise ConfigError(f"the kubeconfig's {field} is not base64") from None


def _parse_time(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ConfigError(f"the exec plugin's expirationTimestamp {text!r} is not an RFC 3339 time") from None


# --- requests ----------------------------------------------------------------------------------------------


class Client:
    """Requests to one API server. ``timeout`` bounds every request that is not a watch, from connecting to the
    last byte of the answer."""

    def __init__(self, connection: Connection, timeout: float = 10.0):
        self.connection = connection
        self.timeout = timeout
        # (the exec plugin's certificate it was made from, the TLS context)
        self._exec_tls: tuple[Optional[tuple], Optional[ssl.SSLContext]] = (None, None)

    async def request(self, method: str, path: str, params: Optional[dict] = None, body: object = None,
                      content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, body bytes) of one request; 401 is retried once with fresh credentials."""
        status, answer = await self._request_once(method, path, params, body, content_type)
        if status == 401 and self.connection.credentials.refused():
            status, answer = await self._request_once(method, path, params, body, content_type)
        return status, answer

    async def _request_once(self, method: str, path: str, params: Optional[dict], body: object,
                            content_type: str) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(
                self._exchange(method, path, params, body, content_type, _Collect()), self.timeout)
        except asyncio.TimeoutError:
            raise Unanswered(f"no answer within {self.timeout:g}s") from None

    async def json(self, method: str, path: str, params: Optional[dict] = None, body: object = None,
                   content_type: str = "application/json", missing_ok: bool = False):
        """The answer as JSON; ApiError for an error status (None for 404 when ``missing_ok``)."""
        status, answer = await self.request(method, path, params, body, content_type)
        if status == 404 and missing_ok:
            return None
        if status >= 300:
            raise ApiError(status, _REASONS.get(status, "Error"), answer)
        return json.loads(answer)

    async def watch(self, path: str, params: dict, on_event: Callable[[dict], None], silence: float):
        """Follow a watch until the API server ends it; each event, as parsed JSON, goes to ``on_event``. When
        nothing at all (not even a bookmark) arrives for ``silence`` seconds, the connection is cut and Unanswered
        raised: a network that drops packets is noticed, not waited on."""
        for attempt in (0, 1):
            lines = _Lines(on_event)
            status, answer = await self._exchange("GET", path, {**params, "watch": "true"}, None, "", lines,
                                                  silence=silence)
            if status == 401 and attempt == 0 and self.connection.credentials.refused():
                continue
            if status >= 300:
                raise ApiError(status, _REASONS.get(status, "Error"), answer)
            if lines.failure is not None:
                raise lines.failure
            return

    async def _tls(self):
        context = self.connection.tls
        certificate = await self.connection.credentials.certificate()
        if certificate is None or context is None:
            return context
        if self._exec_tls[0] is not certificate:  # a certificate from the exec plugin: a context of its own
            fresh = _copy_context(context)
            _load_certificate(fresh, *certificate)
            self._exec_tls = (certificate, fresh)
        return self._exec_tls[1]

    async def _exchange(self, method, path, params, body, content_type, delegate,
                        silence: Optional[float] = None) -> tuple[int, bytes]:
        connection = self.connection
        target = connection.prefix + quote(path, safe="/:@!$&'()*+,;=-._~")
        if params:
            target += "?" + urlencode({key: value for key, value in params.items() if value is not None})
        headers = {"Host": _host_header(connection), "Accept": "application/json", "User-Agent": "backup-repository",
                   "Connection": "close", **await connection.credentials.headers()}
        payload = b""
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
            headers["Content-Length"] = str(len(payload))
        request = "".join([f"{method} {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
        context = await self._tls()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                connection.host, connection.port, ssl=context, limit=1 << 20,
                server_hostname=connection.server_name if context is not None else None), self.timeout)
            writer.write(request.encode("latin-1") + payload)
            reading = _read_answer(reader, delegate, MAX_ANSWER if silence is None else None)
            if silence is None:
                await reading
            else:
                await _within_silence(reading, delegate, silence)
        except asyncio.TimeoutError:
            raise Unanswered(f"no answer within {self.timeout:g}s") from None
        except asyncio.IncompleteReadError:
            raise ConnectionError("the API server closed the connection in the middle of its answer") from None
        except asyncio.LimitOverrunError:
            raise ConnectionError("the API server's answer has a line longer than 1 MiB") from None
        finally:
            if writer is not None:
                writer.close()
        if delegate.status is None:
            raise ConnectionError("the API server closed the connection without an answer")
        return delegate.status, delegate.error_body()


async def _read_answer(reader: asyncio.StreamReader, delegate, limit: Optional[int]):
    """Read one HTTP/1.1 answer: its status line and headers, then its body as it comes (chunked, sized, or up to
    the end of the connection), handed to ``delegate`` piece by piece."""
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    delegate.headers_received(int(parts[1]))
    total = 0

    def received(piece: bytes):
        nonlocal total
        total += len(piece)
        if limit is not None and total > limit:
            raise ConnectionError(f"the API server's answer is larger than {limit >> 20} MiB")
        delegate.data_received(piece)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()).strip():  # trailers
                    pass
                break
            received(await reader.readexactly(size))
            await reader.readexactly(2)
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            piece = await reader.read(min(remaining, 1 << 16))
            if not piece:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(piece)
            received(piece)
    else:
        while piece := await reader.read(1 << 16):
            received(piece)
    delegate.finish()


def _copy_context(base: ssl.SSLContext) -> ssl.SSLContext:
    """A context that trusts what ``base`` trusts and checks names the same way."""
    fresh = ssl.create_default_context()
    for certificate in base.get_ca_certs(binary_form=True):
        fresh.load_verify_locations(cadata=certificate)
    fresh.check_hostname, fresh.verify_mode = base.check_hostname, base.verify_mode
    return fresh


async def _within_silence(reading, delegate, silence: float):
    """Await ``reading`` while the delegate keeps hearing from the server at least every ``silence`` seconds."""
    task = asyncio.ensure_future(reading)
    try:
        while True:
            waited = silence - (time.monotonic() - delegate.heard)
            done, _ = await asyncio.wait({task}, timeout=max(waited, 0.05))
            if done:
                return task.result()
            if time.monotonic() - delegate.heard >= silence:
                raise Unanswered(f"the watch heard nothing for {silence:g}s")
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def _host_header(connection: Connection) -> str:
    host = f"[{connection.host}]" if ":" in connection.host else connection.host
    default = 443 if connection.tls is not None else 80
    return host if connection.port == default else f"{host}:{connection.port}"


class _Collect:
    """An HTTP message delegate that keeps the whole answer."""

    def __init__(self):
        self.status, self._chunks, self.heard = None, [], time.monotonic()

    def headers_received(self, status: int):
        self.status = status
        self.heard = time.monotonic()

    def data_received(self, chunk):
        self._chunks.append(chunk)
        self.heard = time.monotonic()

    def finish(self):
        pass

    def error_body(self) -> bytes:
        return b"".join(self._chunks)


class _Lines(_Collect):
    """An HTTP message delegate for a watch: one JSON event per line, handed on as each line completes (an error
    answer is kept whole instead)."""

    def __init__(self, on_event):
        super().__init__()
        self._on_event, self._partial = on_event, b""
        self.failure = None  # what on_event raised: the rest of the watch is ignored, the caller raises it

    def data_received(self, chunk):
        self.heard = time.monotonic()
        if self.status is None or self.status >= 300:
            self._chunks.append(chunk)
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        self._deliver(lines)

    def finish(self):
        if self.status is not None and self.status < 300:
            self._deliver([self._partial])
        self._partial = b""

    def _deliver(self, lines):
        # what on_event raises ends the watch; the rest of what the server sends is not looked at
        for line in lines:
            if self.failure is None and line.strip():
                try:
                    self._on_event(json.loads(line))
                except Exception as exc:
                    self.failure = exc


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            410: "Gone", 422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout"}
