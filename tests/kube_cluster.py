"""A Kubernetes control plane for tests: a real kube-apiserver on a real etcd, on 127.0.0.1 only.

The pattern of controller-runtime's envtest: no kubelet, no scheduler, no controller-manager, no mocks. What a
test can rely on is what the API server does by itself: custom resource definitions (schema validation, CEL
rules, defaults, status subresource), custom resources, RBAC, token and client-certificate authentication,
watches, optimistic concurrency (resourceVersion). What needs a controller does not happen: pods are never run,
a deleted namespace stays Terminating for good (the namespace controller empties it), owner references are not
garbage-collected, no token Secret or "default" ServiceAccount appears in a namespace (so the ServiceAccount
admission plugin, which needs that account, is off).

``find_tools()`` locates the binaries that ``scripts/build-test-tools.sh`` builds once into
``$BR_TEST_TOOLS/bin`` (default ``~/.cache/backup-repository/test-tools``); ``require_tools()`` is the same
for tests: it skips them with ``TOOLS_HINT`` when they are missing, or fails under ``BR_TEST_REQUIRE_KUBE=1``.

``ControlPlane(workdir).start()`` makes (in ``workdir/pki``) a CA, a serving certificate for 127.0.0.1 and
localhost and a service-account signing key pair, a static token file with two identities, ``admin`` (group
``system:masters``) and ``backup-repository`` (no group, so no right but RBAC's defaults for authenticated
users), starts etcd (data in ``workdir/etcd``) and kube-apiserver (RBAC authorization, client-certificate
authentication against the same CA) on free loopback ports, and returns once ``/readyz`` answers 200. Their
logs are ``workdir/etcd.log`` and ``workdir/kube-apiserver.log``. ``stop()`` terminates both; it deletes
nothing, the caller owns ``workdir``. ``api()`` sends one request with ``requests`` (admin token unless told
otherwise); ``write_kubeconfig()`` writes a kubeconfig for the admin, another token or a client certificate
minted by ``mint_client_cert()``; ``stop_apiserver()`` / ``start_apiserver()`` take the API server away and
bring it back on the same port, over the same etcd.

Certificates are made with the ``cryptography`` package (a dependency of the test extras), or
with the ``openssl`` command when that package is missing.
"""

import atexit
import base64
import ctypes
import datetime
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from typing import NamedTuple, Optional

import requests
import yaml

TOOLS_HINT = ("no kube-apiserver, etcd and helm for the Kubernetes tests: run scripts/build-test-tools.sh (builds "
              "them once, 4 to 7 minutes, into $BR_TEST_TOOLS, default ~/.cache/backup-repository/test-tools)")
ADMIN_USER = "admin"
LIMITED_USER = "backup-repository"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 90  # seconds for kube-apiserver to become ready; it takes 2 to 3 here
#: The least Role the server needs, verb by verb (docs/kubernetes.md#the-role-it-needs); the last rule is optional.
DOCUMENTED_ROLE_RULES = [
    {"apiGroups": ["backups.riotkit.org"], "resources": ["backupusers", "backupcollections"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["backups.riotkit.org"], "resources": ["backupcollections/status"], "verbs": ["patch"]},
]


class Tools(NamedTuple):
    kube_apiserver: str
    etcd: str
    helm: str


def tools_dir() -> str:
    return os.environ.get("BR_TEST_TOOLS") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "backup-repository", "test-tools")


def find_tools() -> Optional[Tools]:
    """The paths of kube-apiserver, etcd and helm built by scripts/build-test-tools.sh, or None when one is
    missing."""
    bindir = os.path.join(tools_dir(), "bin")
    tools = Tools(*(os.path.join(bindir, name) for name in ("kube-apiserver", "etcd", "helm")))
    return tools if all(os.access(path, os.X_OK) for path in tools) else None


def require_tools(module_level: bool = False) -> Tools:
    """find_tools() for tests: skips when the binaries are missing, fails under BR_TEST_REQUIRE_KUBE=1. Called at
    the top of a test module with module_level=True, the whole module is skipped as one line of pytest's summary
    (skipped from a fixture, each test is one line)."""
    import pytest

    tools = find_tools()
    if tools is None:
        if os.environ.get("BR_TEST_REQUIRE_KUBE") == "1":
            pytest.fail(f"BR_TEST_REQUIRE_KUBE=1 but the Kubernetes tests cannot run: {TOOLS_HINT}", pytrace=False)
        pytest.skip(TOOLS_HINT, allow_module_level=module_level)
    return tools


def free_ports(count: int) -> list:
    """Distinct free TCP ports of 127.0.0.1 (all held open together while chosen, so no two are the same)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- certificates and keys --------------------------------------------------------------------------------------

class _CryptographyPKI:
    """CA, certificates and keys (ECDSA P-256) with the cryptography package."""

    def __init__(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.x509, self.hashes, self.serialization, self.ec = x509, hashes, serialization, ec
        self.NameOID, self.EKU = NameOID, ExtendedKeyUsageOID

    def _write_key(self, key, path):
        s = self.serialization
        _write(path, key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()), private=True)

    def _load(self, cert_path, key_path):
        s = self.serialization
        with open(cert_path, "rb") as f:
            cert = self.x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = s.load_pem_private_key(f.read(), password=None)
        return cert, key

    def _name(self, common_name, organizations=()):
        attrs = [self.x509.NameAttribute(self.NameOID.ORGANIZATION_NAME, org) for org in organizations]
        return self.x509.Name(attrs + [self.x509.NameAttribute(self.NameOID.COMMON_NAME, common_name)])

    def _builder(self, subject, issuer, public_key, days):
        now = datetime.datetime.now(datetime.timezone.utc)
        return (self.x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(self.x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days)))

    def make_ca(self, cert_path, key_path, common_name):
        x509 = self.x509
        key = self.ec.generate_private_key(self.ec.SECP256R1())
        name = self._name(common_name)
        cert = (self._builder(name, name, key.public_key(), 3650)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, self.hashes.SHA256()))
        _write(cert_path, cert.public_bytes(self.serialization.Encoding.PEM))
        self._write_key(key, key_path)

    def make_cert(self, ca_cert_path, ca_key_path, cert_path, key_path, common_name, organizations=(),
                  server_ips=(), server_dns=()):
        """A leaf certificate signed by the CA: for serving when server_ips/server_dns are given, else for a client
        (Kubernetes reads the user name from CN and the groups from O)."""
        x509 = self.x509
        ca_cert, ca_key = self._load(ca_cert_path, ca_key_path)
        key = self.ec.generate_private_key(self.ec.SECP256R1())
        serving = bool(server_ips or server_dns)
        builder = (self._builder(self._name(common_name, organizations), ca_cert.subject, key.public_key(), 365)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([self.EKU.SERVER_AUTH if serving else self.EKU.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if serving:
            import ipaddress

            names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            names += [x509.DNSName(dns) for dns in server_dns]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, self.hashes.SHA256())
        _write(cert_path, cert.public_bytes(self.serialization.Encoding.PEM))
        self._write_key(key, key_path)

    def make_key_pair(self, private_path, public_path):
        s = self.serialization
        key = self.ec.generate_private_key(self.ec.SECP256R1())
        self._write_key(key, private_path)
        _write(public_path, key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))


class _OpenSSLPKI:
    """The same with the openssl command."""

    @staticmethod
    def _run(*args):
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")

    @staticmethod
    def _subject(common_name, organizations=()):
        escape = lambda value: value.replace("\\", "\\\\").replace("/", "\\/")  # noqa: E731
        return "".join(f"/O={escape(org)}" for org in organizations) + f"/CN={escape(common_name)}"

    def make_ca(self, cert_path, key_path, common_name):
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key_path, "-out", cert_path, "-days", "3650", "-subj", self._subject(common_name),
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,"
                  "digitalSignature")
        os.chmod(key_path, 0o600)

    def make_cert(self, ca_cert_path, ca_key_path, cert_path, key_path, common_name, organizations=(),
                  server_ips=(), server_dns=()):
        serving = bool(server_ips or server_dns)
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = os.path.join(tmp, "req.csr"), os.path.join(tmp, "ext.cnf")
            self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key_path, "-out", csr, "-subj", self._subject(common_name, organizations))
            lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                     f"extendedKeyUsage={'serverAuth' if serving else 'clientAuth'}",
                     "authorityKeyIdentifier=keyid"]
            if serving:
                names = [f"IP:{ip}" for ip in server_ips] + [f"DNS:{dns}" for dns in server_dns]
                lines.append("subjectAltName=" + ",".join(names))
            _write(ext, "\n".join(lines) + "\n")
            self._run("x509", "-req", "-in", csr, "-CA", ca_cert_path, "-CAkey", ca_key_path, "-set_serial",
                      str(secrets.randbits(63)), "-days", "365", "-sha256", "-extfile", ext, "-out", cert_path)
        os.chmod(key_path, 0o600)

    def make_key_pair(self, private_path, public_path):
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", private_path)
        self._run("pkey", "-in", private_path, "-pubout", "-out", public_path)
        os.chmod(private_path, 0o600)


def _pki():
    if os.environ.get("BR_TEST_KUBE_PKI") != "openssl":  # BR_TEST_KUBE_PKI=openssl tries the other path
        try:
            return _CryptographyPKI()
        except ImportError:
            pass
    return _OpenSSLPKI()


def _write(path, data, private=False):
    mode = "wb" if isinstance(data, bytes) else "w"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with open(fd, mode) as f:
        f.write(data)


def _tail(path, size=4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


# --- processes --------------------------------------------------------------------------------------------------

try:  # loaded here, not between fork and exec
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl  # noqa: B018
except (OSError, AttributeError):
    _LIBC = None


def _die_with_parent():
    """In the child before exec: SIGTERM when the parent (the thread that started it) dies, so a killed test run
    leaves no etcd or kube-apiserver behind. Start the control plane from the main thread."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # 127.0.0.1 through no HTTP(S)_PROXY of the environment, and no ~/.netrc
    return session


def _spawn(args, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)


def _terminate(process, timeout=20):
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ControlPlane:
    """etcd and kube-apiserver on 127.0.0.1, their files in workdir (see the module's docstring)."""

    def __init__(self, workdir: str, tools: Optional[Tools] = None, service_cluster_ip_range: str = "10.0.0.0/24",
                 extra_apiserver_args=()):
        self.workdir = os.path.abspath(workdir)
        self.tools = tools or find_tools()
        if self.tools is None:
            raise RuntimeError(TOOLS_HINT)
        self.service_cluster_ip_range = service_cluster_ip_range
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.pki_dir = os.path.join(self.workdir, "pki")
        self.admin_token = secrets.token_hex(24)
        self.limited_token = secrets.token_hex(24)
        self.port = self.etcd_client_port = self.etcd_peer_port = None
        self.etcd = self.apiserver = None  # the subprocess.Popen of each
        self.start_seconds = None  # from start() to /readyz answering 200
        self._session = _session()
        self._stop_registered = False

    # where things are
    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_client_port}"

    @property
    def ca_path(self) -> str:
        return os.path.join(self.pki_dir, "ca.crt")

    def _pki_path(self, name):
        return os.path.join(self.pki_dir, name)

    @property
    def apiserver_log(self) -> str:
        return os.path.join(self.workdir, "kube-apiserver.log")

    @property
    def etcd_log(self) -> str:
        return os.path.join(self.workdir, "etcd.log")

    # lifecycle
    def start(self) -> "ControlPlane":
        """Make the certificates and the token file, start etcd and kube-apiserver, wait for /readyz. Again after
        stop(): the same ports, certificates, tokens and data."""
        began = time.monotonic()
        if not self._stop_registered:
            atexit.register(self.stop)  # in case the session ends without the fixture's teardown
            self._stop_registered = True
        try:
            self._prepare_files()
            if self.port is None:
                self.port, self.etcd_client_port, self.etcd_peer_port = free_ports(3)
            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self):
        """Terminate kube-apiserver, then etcd; safe to call twice. Deletes no file."""
        self.stop_apiserver()
        _terminate(self.etcd)
        self.etcd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _prepare_files(self):
        os.makedirs(self.pki_dir, exist_ok=True)
        if not os.path.exists(self.ca_path):
            pki = _pki()
            pki.make_ca(self.ca_path, self._pki_path("ca.key"), "backup-repository-test-ca")
            pki.make_cert(self.ca_path, self._pki_path("ca.key"), self._pki_path("apiserver.crt"),
                          self._pki_path("apiserver.key"), "kube-apiserver", server_ips=[LOOPBACK],
                          server_dns=["localhost"])
            pki.make_key_pair(self._pki_path("service-account.key"), self._pki_path("service-account.pub"))
        # token,user,uid[,"group,group"]
        _write(self._pki_path("tokens.csv"),
               f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
               f"{self.limited_token},{LIMITED_USER},{LIMITED_USER}\n", private=True)

    def _start_etcd(self):
        if self.etcd is not None and self.etcd.poll() is None:
            return
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        self.etcd = _spawn([
            self.tools.etcd, "--name=br-test", f"--data-dir={os.path.join(self.workdir, 'etcd')}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=br-test={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # test data: no durability wanted, and fsync is most of etcd's latency
            "--log-level=warn",
        ], self.etcd_log)
        self._wait("etcd", self.etcd, self.etcd_log, 30,
                   lambda: self._session.get(self.etcd_url + "/health", timeout=2).json().get("health") == "true")

    def start_apiserver(self):
        """Start kube-apiserver (again) on its port, over the running etcd, and wait until it is ready."""
        if self.apiserver is not None and self.apiserver.poll() is None:
            return
        pki = self._pki_path
        self.apiserver = _spawn([
            self.tools.kube_apiserver,
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={self.port}", f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}",
            f"--cert-dir={self.pki_dir}",
            f"--tls-cert-file={pki('apiserver.crt')}", f"--tls-private-key-file={pki('apiserver.key')}",
            f"--client-ca-file={self.ca_path}",
            f"--token-auth-file={pki('tokens.csv')}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={pki('service-account.pub')}",
            f"--service-account-signing-key-file={pki('service-account.key')}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            # needs the "default" ServiceAccount that the controller-manager makes in each namespace
            "--disable-admission-plugins=ServiceAccount",
            # the "kubernetes" Service's endpoints: 127.0.0.1 is refused there, and nothing here needs them
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *self.extra_apiserver_args,
        ], self.apiserver_log)
        self._wait("kube-apiserver", self.apiserver, self.apiserver_log, START_TIMEOUT,
                   lambda: self.api("GET", "/readyz", timeout=2).status_code == 200)

    def stop_apiserver(self):
        """Terminate kube-apiserver (etcd keeps running): the API server goes away until start_apiserver()."""
        _terminate(self.apiserver)
        self.apiserver = None
        self._session.close()  # no connection kept to the old process
        self._session = _session()

    @staticmethod
    def _wait(name, process, log_path, timeout, ready):
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}; the end of {log_path}:\n"
                                   f"{_tail(log_path)}")
            try:
                if ready():
                    return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout} s; the end of {log_path}:\n{_tail(log_path)}")
            time.sleep(0.1)

    # talking to it
    def api(self, method: str, path: str, json=None, token: Optional[str] = None, *, cert=None, params=None,
            headers=None, timeout: float = 30, data=None) -> requests.Response:
        """One request to the API server, as the admin unless ``token`` (another bearer token) or ``cert`` (a
        (certificate, key) pair of files, as from mint_client_cert()) says otherwise. PATCH sends a JSON merge
        patch unless headers say another Content-Type. Returns the response whatever its status."""
        all_headers = {"Accept": "application/json"}
        if cert is None:
            all_headers["Authorization"] = f"Bearer {token or self.admin_token}"
        if method.upper() == "PATCH":
            all_headers["Content-Type"] = "application/merge-patch+json"
        all_headers.update(headers or {})
        return self._session.request(method, self.url + path, json=json, data=data, params=params,
                                     headers=all_headers, cert=cert, verify=self.ca_path, timeout=timeout)

    def create_crd(self, manifest: dict, timeout: float = 30) -> dict:
        """Create a CustomResourceDefinition and wait until its resources are served (Established, and a list of
        them answers): a custom resource created right after the CRD may else get 404."""
        response = self.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=manifest)
        if response.status_code != 201:
            raise RuntimeError(f"creating the CRD failed: {response.status_code} {response.text}")
        return self._served(manifest, timeout)

    def apply_crd(self, text: str, timeout: float = 30) -> dict:
        """Install or upgrade a CustomResourceDefinition from its YAML file the way ``kubectl apply --server-side``
        does — server-side apply with strict field validation, so that a field the schema language does not know
        is an error, not silently dropped — and wait until its resources are served."""
        manifest = yaml.safe_load(text)
        response = self.api(
            "PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{manifest['metadata']['name']}",
            data=text.encode(), params={"fieldManager": "kubectl", "fieldValidation": "Strict", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"applying the CRD failed: {response.status_code} {response.text}")
        return self._served(manifest, timeout)

    def _served(self, manifest: dict, timeout: float) -> dict:
        spec = manifest["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("served", True))
        plural = spec["names"]["plural"]
        list_path = f"/apis/{spec['group']}/{version}/{plural}"
        deadline = time.monotonic() + timeout
        while True:
            crd = self.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{spec['group']}"
                           ).json()
            conditions = (crd.get("status") or {}).get("conditions") or []  # null just after the creation
            established = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
            if established and self.api("GET", list_path).status_code == 200:
                return crd
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {plural}.{spec['group']} not served after {timeout} s: {crd.get('status')}")
            time.sleep(0.1)

    def mint_client_cert(self, user: str, groups=()) -> tuple:
        """A client certificate for ``user`` (CN) in ``groups`` (O), signed by the cluster's CA: the API server
        authenticates it as that user. Returns the (certificate, key) paths, in workdir/pki/users."""
        directory = os.path.join(self.pki_dir, "users")
        os.makedirs(directory, exist_ok=True)
        stem = os.path.join(directory, "".join(c if c.isalnum() or c in "-_." else "_" for c in user))
        cert, key = stem + ".crt", stem + ".key"
        _pki().make_cert(self.ca_path, self._pki_path("ca.key"), cert, key, user, organizations=groups)
        return cert, key

    def write_kubeconfig(self, path: str, token: Optional[str] = None, client_cert: Optional[tuple] = None,
                         user: Optional[str] = None, namespace: Optional[str] = None) -> str:
        """Write a kubeconfig (self-contained: the CA and any certificate are embedded) for the admin token, another
        ``token`` or a ``client_cert`` (certificate, key) pair; ``user`` names the kubeconfig's user entry only.
        Returns path."""
        if token is not None and client_cert is not None:
            raise ValueError("a kubeconfig identity is a token or a client certificate, not both")

        def b64(file_path):
            with open(file_path, "rb") as f:
                return base64.b64encode(f.read()).decode()

        if client_cert is not None:
            credentials = {"client-certificate-data": b64(client_cert[0]), "client-key-data": b64(client_cert[1])}
        else:
            credentials = {"token": token or self.admin_token}
        user = user or ("client-certificate" if client_cert else "admin" if token is None else "token")
        context = {"cluster": "br-test", "user": user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "br-test", "cluster": {"server": self.url,
                                                         "certificate-authority-data": b64(self.ca_path)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "br-test", "context": context}],
            "current-context": "br-test",
        }
        _write(path, yaml.safe_dump(config, sort_keys=False), private=True)
        return path
