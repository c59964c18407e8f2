# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all lint doctor clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/face-expr demo

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

lint: setup
	$(VENV)/bin/ruff check .

doctor: setup
	$(VENV)/bin/face-expr doctor

clean:
	rm -rf build install log demo_out .pytest_cache
