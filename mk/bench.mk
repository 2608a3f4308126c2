# `make bench` (included by the top-level Makefile): the release binary and the raw
# engine-cycle example, the sandbox images and the venv, then bench/run.py, which prints
# a table and writes bench/results.md (see the docstring of bench/run.py).
#
#   make bench                         full run (N=50, about 4 minutes on 2 cores)
#   BENCH_N=10 make bench              a quick run while developing
#   make bench BENCH_ARGS="--pause 1"  any option of bench/run.py (--help)

BENCH_PY = $(or $(PY),.venv/bin/python)
BENCH_CARGO = $(or $(CARGO),cargo)

.PHONY: bench

bench: image-build venv
	$(BENCH_CARGO) build --release --bin code-executor-mcp --example engine_cycle
	$(BENCH_PY) bench/run.py $(BENCH_ARGS)
