# edgegen: `make run` (main job) and `make test` (fast tier) bootstrap .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install run test test-slow bench report lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[rl,scale,dev]'
	touch $(STAMP)

run: install
	$(BIN)/edgegen aigc bench --out runs/aigc-main

test: install
	$(BIN)/python -m pytest -q -x

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/edgegen aigc bench --out runs/aigc-bench --total-env-steps 150000 --seeds 3 --workers 2
	$(BIN)/edgegen aigc speed --out runs/aigc-speed
	$(BIN)/edgegen report runs --out BENCHMARKS.md

report: install
	$(BIN)/edgegen report runs --out BENCHMARKS.md

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache
