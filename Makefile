# video2mp3: every developer and CI entry point. Each target works from a fresh clone.
#
#   make test   set up the venv and tools, start what is missing, run the whole suite
#   make bench  the benchmarks against bare ffmpeg and raw GridFS (docs/performance.md)
#   make lint   ruff lint + format check
#   make run    run the whole system on this machine
#   make user EMAIL=... PASSWORD=... [ADMIN=1]   create or update a user

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SECANTUS_VENV := .tools/secantus
SECANTUS_VERSION := 0.7.0b3
RUN_DIR := .run
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help venv tools deploy-tools test bench lint format run user clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "video2mp3 needs Python >= 3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev,bench]'
	@touch $@

# SecantusDB (GPL-2.0) is a development-only MongoDB stand-in: it gets its own
# venv and runs as a separate program, never imported by project code.
$(SECANTUS_VENV)/.installed:
	@test -x $(SECANTUS_VENV)/bin/python || $(PYTHON) -m venv $(SECANTUS_VENV)
	$(SECANTUS_VENV)/bin/python -m pip install --quiet 'secantusdb==$(SECANTUS_VERSION)'
	@touch $@

venv: $(VENV)/.installed ## create the virtualenv with every service and dev dependency

tools: $(SECANTUS_VENV)/.installed ## install the local MongoDB stand-in (SecantusDB)

# Test tools from Debian's packages, as "command:package": docker-compose checks
# docker-compose.yml, promtool the Prometheus configs, chromium runs the web page's
# end-to-end test (kubectl, for kubectl kustomize, comes with the machine image). Installs only what is missing, without
# recommends (docker-compose's would pull in a Docker engine) and without starting
# the prometheus daemon (RUNLEVEL=1 keeps invoke-rc.d from it).
DEPLOY_TOOLS := docker-compose:docker-compose promtool:prometheus chromium:chromium

deploy-tools: ## install test tools from Debian (docker-compose, promtool, chromium)
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

test: venv tools deploy-tools ## run the whole test suite against real local servers
	$(PY) -m pytest $(PYTEST_ARGS)

# Each benchmark starts its own stack on free ports (SecantusDB, the four services; MariaDB
# and RabbitMQ are the machine's, started if down) and stops it again. About 10 minutes.
bench: venv tools ## run the benchmarks and print the results table (BENCH_ARGS=pipeline ...)
	$(PY) -m bench $(BENCH_ARGS)

lint: venv ## lint, check formatting and scan for security issues
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -c pyproject.toml -r .

format: venv ## apply ruff's formatting and safe fixes
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
