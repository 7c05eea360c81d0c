# backup-repository — the two commands of the README, and a few more.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    := .run

.PHONY: run test test-fast soak bench bench-config bench-metrics binary install venv clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

BUILD_STAMP := $(VENV)/.installed-build
PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system

$(BUILD_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[build]'
	touch $(BUILD_STAMP)

venv: $(STAMP)

## make run: serve on :8080 with the embedded defaults and the example configuration in docs/examples/
run: $(STAMP)
	@mkdir -p $(RUN) && chmod 700 $(RUN)
	@test -s $(RUN)/jwt-secret || $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $(RUN)/jwt-secret
	@test -s $(RUN)/health-key || $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))' > $(RUN)/health-key
	@echo "Example logins (docs/examples/): admin / admin (systemAdmin), uploader / uploader (backupUploader on iwa-ait)"
	@echo "Try: curl -s -X POST -d '{\"username\":\"admin\",\"password\":\"admin\"}' http://127.0.0.1:8080/api/stable/auth/login"
	@echo "Readiness: curl -s http://127.0.0.1:8080/ready?code=$$(cat $(RUN)/health-key)"
	BR_JWT_SECRET_KEY="$$(cat $(RUN)/jwt-secret)" BR_HEALTH_CHECK_KEY="$$(cat $(RUN)/health-key)" \
	  $(BIN)/backup-repository --provider=filesystem --config-local-path=docs/examples --log-level=info

## make test: the whole suite (PostgreSQL cases on BR_TEST_PG_DSN, or on a throwaway cluster the tests start);
## the test tools (kube-apiserver, etcd, helm, MinIO, fake-gcs-server) are built first when missing
## (scripts/build-test-tools.sh), and Azurite is installed from npm when missing (scripts/install-azurite.sh): its
## tests then fail, never skip
test: $(STAMP)
	bash scripts/build-test-tools.sh
	bash scripts/install-azurite.sh
	BR_TEST_REQUIRE_AZURITE=1 $(BIN)/python -m pytest

## make test-fast: the in-process HTTP tier alone (tests/inprocess, also part of make test): the real application
## served inside the test process on SQLite and a local store, every endpoint's answers and errors in seconds
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/inprocess

## make soak: two instances on one PostgreSQL and MinIO, 6 clients for 6 minutes with faults every 20-40 s (kill -9,
## database and store frozen, uploads cut), then the end state checked; about 10 minutes (docs/scaling.md#the-soak)
soak: $(STAMP)
	bash scripts/build-test-tools.sh
	$(BIN)/python -m tests.soak

## make bench: upload/download throughput against a private nginx (WebDAV PUT, GET), runs alternating, and the
## server's memory, on loopback; some rows: benchmarks/bench.py --only ROW,... (figures: docs/performance.md);
## make bench BENCH_ARGS="--storage s3 --size-mib 1024": on a bucket of MinIO against mc's (and curl's) direct transfers
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

## make bench-metrics: GET /metrics with 10,000 collections, the cost of computing the collection metrics, and
## request latency while they are computed (figures: docs/performance.md#metrics)
bench-metrics: $(STAMP)
	$(BIN)/python benchmarks/metrics_scrape.py

## make bench-config: start-up, memory, idle CPU, edit latency and request latency with 100, 1,000 and 10,000
## users and collections, from files and from a real kube-apiserver (figures: docs/performance.md)
bench-config: $(STAMP)
	bash scripts/build-test-tools.sh
	$(BIN)/python benchmarks/config_scale.py

## make binary: one executable, dist/backup-repository, that needs no Python on the target
binary: $(BUILD_STAMP)
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
	  packaging/backup-repository.spec
	@ls -l dist/backup-repository

## make install PREFIX=/usr/local: the executable and the systemd unit (build it first with make binary)
install:
	@test -x dist/backup-repository || { echo "run make binary first"; exit 1; }
	install -D -m 0755 dist/backup-repository $(DESTDIR)$(PREFIX)/bin/backup-repository
	install -D -m 0644 systemd/backup-repository.service $(DESTDIR)$(UNITDIR)/backup-repository.service
	install -D -m 0644 systemd/backup-repository.sysusers $(DESTDIR)/usr/lib/sysusers.d/backup-repository.conf
	sed -i 's#^ExecStart=/usr/local/bin/#ExecStart=$(PREFIX)/bin/#' $(DESTDIR)$(UNITDIR)/backup-repository.service
	install -d -m 0750 $(DESTDIR)/etc/backup-repository $(DESTDIR)/etc/backup-repository/config
	test -e $(DESTDIR)/etc/backup-repository/env || \
	  install -m 0600 systemd/backup-repository.env.example $(DESTDIR)/etc/backup-repository/env
	if [ -z "$(DESTDIR)" ]; then \
	  { command -v systemd-sysusers >/dev/null && systemd-sysusers /usr/lib/sysusers.d/backup-repository.conf; } || \
	  id backup-repository >/dev/null 2>&1 || useradd --system --home-dir /var/lib/backup-repository \
	    --shell /usr/sbin/nologin backup-repository; \
	  chgrp -R backup-repository /etc/backup-repository/config && chgrp backup-repository /etc/backup-repository; \
	fi
	@echo "installed; next: edit /etc/backup-repository/env, then systemctl daemon-reload && systemctl enable --now backup-repository"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
