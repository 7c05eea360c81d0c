# backup-repository — the two commands of the README, and a few more.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    := .run

.PHONY: run test bench venv clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

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

## make test: the whole suite (PostgreSQL tests need BR_TEST_PG_DSN; .ci/run sets it)
test: $(STAMP)
	$(BIN)/python -m pytest

## make bench: upload/download throughput and server memory on loopback (figures: docs/performance.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
