# taskvpc developer entry points.  `make help` lists them.
#
# `make setup` is idempotent and fast on a second run: Debian packages are only
# installed when dpkg says they are missing, the venv is only created when it
# does not exist, and `pip install -e` only re-runs when pyproject.toml is newer
# than the stamp file.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-print-directory

# Debian packages the project needs on the machine (tests and the data plane):
#   postgresql  server binaries for the throwaway test servers (tests/support/pgserver.py)
#   iproute2    ip netns / veth / bridges          nftables  task firewalling / NAT
#   runc        the OCI runtime for task containers    tini  static init for initProcessEnabled
#   procps      ps / pkill / sysctl                psmisc    fuser / killall (debugging)
#   busybox-static  httpd and sh for the examples: the agent makes the image busybox:latest from it
#   skopeo      `taskvpc image pull` fetches images from registries (layers are unpacked in Python, so
#               no umoci: the store applies OCI whiteouts itself and caches layers by digest)
#   chromium    the console's browser tests (Playwright drives it by executable_path; no browser download)
#   awscli      AWS CLI v2 at /usr/bin/aws, for tests of `aws logs tail` (`aws` stays the pyenv/venv v1)
#   gcc libc6-dev   build build/taskvpc-cshim, the C supervisor of runc containers (agent/runtime/csrc)
DEB_PACKAGES := postgresql iproute2 nftables runc tini procps psmisc busybox-static skopeo haproxy chromium awscli \
                gcc libc6-dev

PYTHON ?= python3
VENV   := .venv
VBIN   := $(VENV)/bin
STAMP  := $(VENV)/.installed
CSHIM  := build/taskvpc-cshim
BENCH_STAMP := $(VENV)/.installed-bench
LINT_PATHS := taskvpc tests bench

# Pass-through arguments: `make up ARGS='--port 4566'`, `make unit ARGS='-k cluster'`.
ARGS ?=

comma := ,
say = printf '\n\033[1m==> %s\033[0m\n' "$(1)"

.PHONY: help setup system-packages up test lint unit bench bench-deps clean distclean

help:
	@echo "make setup      install Debian packages (as root), create .venv, pip install -e '.[dev]'"
	@echo "make up         setup, then run 'taskvpc up' in the foreground (ARGS=... passed through)"
	@echo "make test       setup, lint gates (ruff, ruff format, mypy, import-linter), then all of pytest"
	@echo "make lint       the lint gates only"
	@echo "make unit       pytest tests/unit only"
	@echo "make bench      install '.[bench]' and run bench/api.py against taskvpc, moto and ministack"
	@echo "make bench-deps what the root benches need (bench/launch.py, firewall.py, sg_live.py; iperf3)"
	@echo "make clean      remove caches and build artefacts (keeps .venv; 'make distclean' removes it)"

# ---------------------------------------------------------------------------- setup

setup: system-packages $(STAMP) $(CSHIM)

system-packages:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  st=$$(dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null || true); \
	  [ "$$st" = installed ] || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "setup: missing Debian packages:$$missing -- not root, skipping apt-get" >&2; \
	  echo "setup: run 'sudo apt-get install -y$$missing' (or 'sudo make setup') to get them" >&2; \
	  exit 0; \
	fi; \
	$(call say,apt-get install$$missing); \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq; \
	apt-get install -y -qq --no-install-recommends $$missing

$(VBIN)/python:
	@$(call say,creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1)))
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VBIN)/python
	@$(call say,pip install -e '.[dev]')
	$(VBIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# The runc runtime's per-container supervisor (taskvpc/agent/runtime/cshim.py; same flags as its
# CFLAGS). Without a C compiler the agent runs Python shims instead, so a missing one only warns.
$(CSHIM): taskvpc/agent/runtime/csrc/cshim.c
	@if ! command -v $(CC) >/dev/null; then \
	  echo "setup: no C compiler ($(CC)): runc containers get Python shims (0.1 -> 1.4 MiB each)" >&2; \
	  exit 0; \
	fi; \
	$(call say,building $@); \
	mkdir -p $(@D); \
	$(CC) -O2 -Wall -Wextra -Werror -static -o $@ $<

# ---------------------------------------------------------------------------- run

up: setup
	exec $(VBIN)/taskvpc up $(ARGS)

# ---------------------------------------------------------------------------- quality gates

lint: setup
	@$(call say,ruff check)
	$(VBIN)/ruff check $(LINT_PATHS)
	@$(call say,ruff format --check)
	$(VBIN)/ruff format --check $(LINT_PATHS)
	@$(call say,mypy)
	$(VBIN)/mypy taskvpc
	@$(call say,import-linter)
	$(VBIN)/lint-imports

# pytest exits 5 when it collected no tests; make already fails on any non-zero
# status, the wrapper only makes the reason obvious in the log.
define run_pytest
	@$(call say,pytest $(or $(1),(all tests)))
	@rc=0; $(VBIN)/pytest $(1) $(ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests -- counted as a failure" >&2; fi; \
	exit $$rc
endef

test: lint
	$(call run_pytest,)

unit: setup
	$(call run_pytest,tests/unit)

# ---------------------------------------------------------------------------- bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	@$(call say,pip install -e '.[dev$(comma)bench]')
	$(VBIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

bench: system-packages $(BENCH_STAMP)
	$(VBIN)/python bench/api.py --start taskvpc --start moto --start ministack $(ARGS)

# The data-plane benches run by hand as root (see README): iperf3 drives bench/firewall.py's throughput
# (without it the bench falls back to a slower Python sender).
bench-deps: system-packages $(BENCH_STAMP)
	@if [ "$$(id -u)" -eq 0 ] && ! command -v iperf3 >/dev/null; then apt-get install -y -q iperf3; fi

# ---------------------------------------------------------------------------- clean

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
