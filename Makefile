# alloctrace: one entry point for setting up, building fixtures, testing and benchmarking.
# `make demo` and `make test` work on a fresh Debian machine (as root they install what is missing).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := gcc g++ make strace libc6-dbg libjemalloc2 libjemalloc-dev \
	libtcmalloc-minimal4 libmimalloc2.0 musl-tools
STAMP := $(VENV)/.installed

.PHONY: setup system-packages fixtures demo test lint bench fuzz clean

setup: system-packages $(STAMP) fixtures
	@# An editable install leaves no bytecode, and with PYTHONDONTWRITEBYTECODE set every run would
	@# compile alloctrace's sources again (about 60 ms of each start-up, measured): cache it here.
	@$(BIN)/python -m compileall -q alloctrace tracer analyzers >/dev/null

# Installs only what is missing, so a second run costs one dpkg-query.
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages: $$missing"; \
			echo "install them with: sudo apt-get install $$missing"; exit 1; \
		fi; \
	fi

$(STAMP): pyproject.toml setup.py tracer/_fastloop.c tracer/_lines.c analyzers/_addrspace.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,notebook]'
	touch $@

fixtures: system-packages
	$(MAKE) -s -C fixtures

# The article's question on the seed fixture: glibc vs jemalloc side by side, then the report of
# the article's own build (g++ ... -ljemalloc). Reports go to stderr, like strace's output.
demo: setup
	@echo "--- alloctrace diff --allocator glibc --allocator jemalloc -- fixtures/build/seed ---"
	$(BIN)/alloctrace diff --allocator glibc --allocator jemalloc -- fixtures/build/seed
	@echo
	@echo "--- alloctrace -o demo-seed.jsonl fixtures/build/seed-jemalloc ---"
	$(BIN)/alloctrace -o demo-seed.jsonl -- fixtures/build/seed-jemalloc

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The hypothesis tests with many examples (the quick run is part of `make test`).
FUZZ_EXAMPLES ?= 20000
fuzz: setup
	ALLOCTRACE_FUZZ=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q --timeout=0 \
		tests/test_fuzz.py tests/test_traceformat.py tests/test_traceformat_syscalls.py tests/test_addrspace.py

bench: setup
	$(BIN)/python -m bench

clean:
	$(MAKE) -s -C fixtures clean
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache demo-seed.jsonl
