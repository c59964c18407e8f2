# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all lint doctor model clean

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

# Rebuild the shipped policy (models/policy) from a fixed seed: about 80 minutes on 2 CPU cores.
# One intra-op thread: the shipped model was trained so, and float sums depend on the thread count.
model: setup
	rm -rf data/synth runs/sft runs/eval
	$(VENV)/bin/face-expr data synth data/synth -n 360 --seed 0
	OMP_NUM_THREADS=1 $(VENV)/bin/face-expr train --data data/synth --out runs/sft --steps 3000 --seed 0 --head-step-weight 3
	OMP_NUM_THREADS=1 $(VENV)/bin/face-expr calibrate --model runs/sft/policy --data data/synth
	$(VENV)/bin/face-expr eval --data data/synth --split test --policy runs/sft/policy --out runs/eval
	$(PY) scripts/ship_model.py runs/sft/policy runs/eval

clean:
	rm -rf build install log demo_out .pytest_cache
