# The two commands a newcomer runs: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test test-cluster lint bench clean ui-assets browser nftables

# The dashboard's chart library (src/nimbus/ui), fetched from the npm registry, checked
# against the tarball's sha256, unpacked into a git-ignored vendor/ folder.
UPLOT_VERSION := 1.6.32
UPLOT_SHA256 := 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
UI_VENDOR := src/nimbus/ui/vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed

## up: install and start nimbus on http://127.0.0.1:9000 (state in ./.nimbus)
up: $(VENV)/.installed nftables
	@# Without npm the dashboard's charts are missing (/ui says how to get them); nimbus runs.
	-@$(MAKE) -s ui-assets
	$(BIN)/nimbus up

## ui-assets: uPlot for the dashboard at /ui (needs npm)
ui-assets: $(UI_VENDOR)/.uplot-$(UPLOT_VERSION)

$(UI_VENDOR)/.uplot-$(UPLOT_VERSION):
	@command -v npm >/dev/null || { echo "make ui-assets: npm is needed to fetch uPlot for the dashboard (apt-get install npm)"; exit 1; }
	@rm -rf $(UI_VENDOR) && mkdir -p $(UI_VENDOR)/.pack
	@cd $(UI_VENDOR)/.pack && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null
	@echo "$(UPLOT_SHA256)  $(UI_VENDOR)/.pack/uplot-$(UPLOT_VERSION).tgz" | sha256sum --check --quiet
	@tar -xzf $(UI_VENDOR)/.pack/uplot-$(UPLOT_VERSION).tgz -C $(UI_VENDOR) --strip-components=2 \
		package/dist/uPlot.iife.min.js package/dist/uPlot.min.css
	@tar -xzf $(UI_VENDOR)/.pack/uplot-$(UPLOT_VERSION).tgz -O package/LICENSE > $(UI_VENDOR)/uPlot.LICENSE
	@rm -rf $(UI_VENDOR)/.pack && touch $@

## nftables: nft, which functions' own network namespaces are filtered with
nftables:
	@if ! command -v nft >/dev/null && [ ! -x /usr/sbin/nft ]; then \
		if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then \
			echo "make nftables: install nftables (nft) as root, or set function_network = \"host\" (functions unisolated from the host's network)"; \
		else \
			echo "installing nftables (apt-get)"; \
			apt-get update -qq >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; \
		fi; \
	fi

## browser: Debian's chromium and chromedriver, for the dashboard's browser test (tests/ui)
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "make browser: run as root, or apt-get install chromium chromium-driver (tests/ui skips without them)"; \
		else \
			echo "installing chromium and chromium-driver (apt-get)"; \
			apt-get update -qq >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		fi; \
	fi

## test: install with test extras, lint, check layers and types, and run the whole suite
test: $(VENV)/.installed-test ui-assets browser nftables
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

## test-cluster: the control-plane suite again, each server a `nimbus up --cluster` on
## PostgreSQL + NATS with a worker node running its invocations (tests/conftest.py)
test-cluster: $(VENV)/.installed-test nftables
	NIMBUS_TEST_CLUSTER=1 $(BIN)/pytest tests/api $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy

## bench: every benchmark, one table (bench/README.md); BENCH_ARGS=--quick to try it out
bench: $(VENV)/.installed-bench
	@command -v bwrap >/dev/null && command -v wrk >/dev/null || { \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "make bench: run as root, or apt-get install bubblewrap wrk"; exit 1; \
		fi; \
		echo "installing bubblewrap and wrk (apt-get)"; \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap wrk >/dev/null; }
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $@ $(VENV)/.installed $(VENV)/.installed-test

clean:
	rm -rf $(VENV) .nimbus .pytest_cache
