# starforge-backfill: the newcomer's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test lint bench bench-scale demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,embedded,api,s3]'
	touch $@

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Bytecode first, as a wheel install would have it: with PYTHONDONTWRITEBYTECODE set (as on some CI and
# dev machines) every `run` the bench starts would otherwise compile the package again (~50 ms each).
bench: install
	$(BIN)/python -m compileall -q starforge_backfill
	$(BIN)/python -m bench
	$(BIN)/python -m bench.census
	$(BIN)/python -m bench.verify_full
	$(BIN)/python -m bench.impact

# Not part of `make test` or `make bench`: minutes of both cores, 10k to 1M snapshots on a throwaway server.
bench-scale: install
	$(BIN)/python -m compileall -q starforge_backfill
	$(BIN)/python -m bench.scale --sizes $(or $(SIZES),10000,100000,1000000)

demo: install
	$(BIN)/starforge-backfill demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts bench/results bench/data .demo
