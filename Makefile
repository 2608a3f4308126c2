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

## Every test: unit and engine tests (Rust), runner tests, end to end through the MCP SDK.
test: build image-build venv
	$(MAKE) --no-print-directory $(DENO_HOST)
	$(CARGO) nextest run --no-fail-fast
	DENO_BIN=$(CURDIR)/$(DENO_HOST) $(PY) -m pytest -q -rs tests/runners tests/e2e
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
