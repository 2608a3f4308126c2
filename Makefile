# code-executor-mcp: build, images, tests. `make run` and `make test` build whatever is
# missing first.
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
DEBUG_BIN := target/debug/code-executor-mcp
RELEASE_BIN := target/release/code-executor-mcp

.PHONY: all build release run test test-rust test-python venv doctor lint fmt clean

all: build

include mk/images.mk
include mk/bench.mk
include mk/compose.mk
include mk/security.mk

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Build the release binary and the images if missing, then serve MCP over stdio.
run: release image-build
	@exec $(RELEASE_BIN) serve

doctor: build image-build
	$(DEBUG_BIN) doctor

## The Python client side of the tests: the official MCP SDK and pytest in a venv.
$(VENV)/.stamp: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r tests/requirements.txt
	touch $@

venv: $(VENV)/.stamp

## The Deno binary on the host, for the runner tests: copied out of the deno image (the
## one the sandboxes run, built from the pinned and checked wheel).
DENO_HOST := images/.cache/deno/bin/deno
DENO_IMAGE := code-executor/deno:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
$(DENO_HOST): images/deno/deno.pin
	@mkdir -p $(dir $@)
	@cid=$$(docker create --label code-executor.managed=true $(DENO_IMAGE)) && \
	  { docker cp $$cid:/usr/local/bin/deno $@; rc=$$?; docker rm -f $$cid >/dev/null; exit $$rc; }
	chmod 0755 $@

## The suites that attack the sandbox; `make test` runs them under runc and under gVisor.
HOSTILE_SUITES := tests/e2e/test_e2e_isolation.py tests/e2e/test_e2e_hostile.py tests/e2e/test_e2e_security.py tests/e2e/test_e2e_apparmor.py

## Every test: unit and engine tests (Rust; the seccomp ones under runc and runsc), runner
## tests, end to end through the MCP SDK under runc, then the hostile suites again under
## gVisor (runsc, registered by `make gvisor-setup`).
test: build image-build venv gvisor-setup apparmor-check
	$(MAKE) --no-print-directory $(DENO_HOST)
	$(CARGO) nextest run --no-fail-fast
	DENO_BIN=$(CURDIR)/$(DENO_HOST) CE_E2E_RUNTIME=runc $(PY) -m pytest -q -rs tests/runners tests/e2e
	CE_E2E_RUNTIME=runsc $(PY) -m pytest -q -rs $(HOSTILE_SUITES)
	@left=$$(docker ps -aq --filter label=code-executor.managed=true | wc -l); \
	  if [ "$$left" -ne 0 ]; then echo "FAIL: $$left sandbox container(s) left behind"; docker ps -a --filter label=code-executor.managed=true; exit 1; fi; \
	  echo "no sandbox container left behind"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean: image-clean
	$(CARGO) clean
	rm -rf $(VENV)
