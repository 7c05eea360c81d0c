from setuptools import find_packages, setup

setup(
    name="backup-repository",
    version="0.1.0",
    description="Zero-knowledge, multi-tenant storage server for GPG-encrypted backups "
                "(drop-in replacement for riotkit-org/backup-repository v4)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["backup_repository", "backup_repository.*"]),
    install_requires=[
        "tornado>=6.3",
        "aiopg>=1.4",
        "pyjwt>=2.8",
        "argon2-cffi>=23.1",
        "apache-libcloud>=3.8",
        # gs:// storage: Google's own client of the JSON API (storage/gcs.py says why not libcloud's XML driver)
        "google-cloud-storage>=3.0",
        "croniter>=2.0",
        "pyyaml>=6.0",
        # CRC-24 of ASCII-armored uploads at C speed (docs/security.md): ~15 GB/s here, where a pure-Python table
        # does ~10 MB/s and crcmod's byte-wise C ~430 MB/s
        "anycrc>=2.1",
        # base64 of ASCII-armored uploads with SIMD (docs/performance.md): ~5 GB/s of armor text here with its line
        # breaks removed, where binascii's strict decoder does ~0.85 GB/s on the event loop
        "pybase64>=1.3",
        # /metrics: the reference implementation of Prometheus' text format, histograms and process metrics
        "prometheus_client>=0.20",
    ],
    extras_require={
        # hypothesis drives the API fuzz test from docs/openapi.yaml; openapi-spec-validator checks that file;
        # pyinstaller builds the single executable that the packaging tests run; schemathesis probes the live
        # server from the same spec; import-linter holds the layers of docs/architecture.md; mypy holds the ports of
        # services/ports.py (mypy.ini; pinned to a minor version, whose checks do not change under us), with the
        # stubs of the untyped libraries it reads
        "test": ["pytest>=7.4", "requests>=2.28", "cryptography>=41", "boto3>=1.28", "hypothesis>=6.100",
                 "openapi-spec-validator>=0.7", "pyinstaller>=6.0",
                 "schemathesis>=4.0", "import-linter>=2.0",
                 "mypy~=2.4.1", "types-PyYAML>=6.0", "types-croniter>=6.0", "types-psycopg2>=2.9"],
        "build": ["pyinstaller>=6.0"],
    },
    entry_points={"console_scripts": ["backup-repository=backup_repository.cli:main"]},
)
