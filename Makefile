# llm-slo-stack. `make` generates rules from the default SLO file; `make test` runs every
# check CI runs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := generate

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPECS ?= slo/default.yaml
RULES_DIR ?= rules/generated
DASHBOARDS_DIR ?= dashboards/generated
COMPOSE_DIR ?= compose/generated
K8S_DIR ?= deploy/kubernetes
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: FORCE help demo demo-incident generate import-graph test test-fast check lint promtool-check golden bench bench-queries promtool clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-15s %s\n", $$1, $$2}'

generate: $(VENV)/.installed ## Write rules, alerts, their promtool tests and dashboards from $(SPECS)
	$(BIN)/llm-slo generate $(SPECS) --rules-dir $(RULES_DIR) --dashboards-dir $(DASHBOARDS_DIR)
	$(BIN)/llm-slo compose $(firstword $(SPECS)) --out-dir $(COMPOSE_DIR)
	$(BIN)/llm-slo k8s $(firstword $(SPECS)) --out $(K8S_DIR)

test: check ## Every check, then the test suite (what CI runs)
	$(BIN)/pytest

test-fast: $(VENV)/.installed ## The test suite but promtool and real-Prometheus tests (under a minute)
	$(BIN)/pytest -q -m "not promtool and not prometheus and not alertmanager"

check: lint promtool-check ## ruff, promtool on the generated rules, generated files up to date
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BIN)/llm-slo generate $(SPECS) --rules-dir $$tmp/rules --dashboards-dir $$tmp/dashboards >/dev/null && \
	$(BIN)/llm-slo compose $(firstword $(SPECS)) --out-dir $$tmp/compose >/dev/null && \
	$(BIN)/llm-slo k8s $(firstword $(SPECS)) --out $$tmp/k8s >/dev/null && \
	diff -ru $(RULES_DIR) $$tmp/rules && diff -ru $(DASHBOARDS_DIR) $$tmp/dashboards && \
	diff -ru $(COMPOSE_DIR) $$tmp/compose && diff -ru $(K8S_DIR) $$tmp/k8s || \
	{ echo "generated files are stale: run make and commit them"; exit 1; }
	@echo "generated files are up to date"

lint: $(VENV)/.installed ## ruff lint and format check, mypy (strict) on the package, tests and benches
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# The package is checked where it is installed (the link tree); errors name the real files.
	set -o pipefail; $(BIN)/mypy $(addprefix -p llm_slo_stack.,$(PACKAGES)) | sed -E 's#^build/__editable__[^/]*/llm_slo_stack/##'
	$(BIN)/mypy tests bench

promtool-check: promtool
	promtool check rules $(RULES_DIR)/*.rules.yaml
	promtool test rules $(RULES_DIR)/tests/*.yaml
	amtool check-config $(RULES_DIR)/alertmanager.yaml $(COMPOSE_DIR)/alertmanager.yml

golden: $(VENV)/.installed ## Rewrite tests/golden/*/expected after a deliberate generator change
	UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_golden.py -k writes_the_golden

demo: $(VENV)/.installed promtool ## The whole stack on this machine, traffic and a live view (Ctrl-C stops it)
	$(BIN)/llm-slo demo $(firstword $(SPECS))

demo-incident: $(VENV)/.installed promtool ## The demo, then an error burst: prints fault-to-page time beside theory
	$(BIN)/llm-slo demo $(firstword $(SPECS)) --incident

bench: $(VENV)/.installed ## Run the benchmarks (not part of CI) and print their figures
	$(BIN)/python -m bench.exporter
	$(BIN)/python -m bench.buckets
	$(BIN)/python -m bench.tracing
	$(BIN)/python -m bench.generate

bench-queries: $(VENV)/.installed ## Backfill 30 days x 20 models, time the dashboards' queries (about 20 min, 4 GB of /tmp)
	$(BIN)/python -m bench.queries

# The package's folders install under the llm_slo_stack namespace as a tree of links in
# build/ (setuptools' strict editable mode: type checkers can follow it, import hooks they
# cannot). A module added or removed changes .modules and so reinstalls the links.
PACKAGES := cli dashboards demo exporters k8s rules simulator slo tracing

$(VENV)/.modules: FORCE
	@mkdir -p $(VENV) && find $(PACKAGES) -type f -not -path '*/__pycache__/*' | sort > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

$(VENV)/.installed: pyproject.toml $(VENV)/.modules
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing Debian's python3-venv"; \
	  rm -rf $(VENV); $(APT) update -q && $(APT) install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=strict
	@touch $@

promtool: ## Install promtool, amtool and docker-compose (Debian's prometheus, prometheus-alertmanager, docker-compose) if missing
	@command -v promtool >/dev/null || { \
	  echo "promtool not found: installing Debian's prometheus package"; \
	  { $(APT) update -q && $(APT) install -y -q --no-install-recommends prometheus; } || { \
	    echo "could not install it; run: sudo apt-get install prometheus"; exit 1; }; }
	@command -v amtool >/dev/null || { \
	  echo "amtool not found: installing Debian's prometheus-alertmanager package"; \
	  { $(APT) update -q && $(APT) install -y -q --no-install-recommends prometheus-alertmanager; } || { \
	    echo "could not install it; run: sudo apt-get install prometheus-alertmanager"; exit 1; }; }
	@command -v docker-compose >/dev/null || { \
	  echo "docker-compose not found: installing Debian's docker-compose (validates compose/ offline)"; \
	  { $(APT) update -q && $(APT) install -y -q --no-install-recommends docker-compose; } || { \
	    echo "could not install it; run: sudo apt-get install docker-compose"; exit 1; }; }

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) build .pytest_cache .ruff_cache .mypy_cache *.egg-info

import-graph: $(VENV)/.installed ## Print which folders import which (tests/test_layers.py says which may)
	@$(BIN)/python -m tests.support.layers
