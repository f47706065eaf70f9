# edgegen: `make run` (main job) and `make test` (fast tier) bootstrap .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install run test test-slow bench bench-fedtune report lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[rl,scale,fedtune,flower,dev]'
	touch $(STAMP)

run: install
	$(BIN)/edgegen aigc bench --out runs/aigc-main --total-env-steps 30000 --seeds 1 --workers 2 --eval-every-env-steps 5000

test: install
	$(BIN)/python -m pytest -q -x

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The runs behind BENCHMARKS.md (about 1.5 h on 2 cores); re-running continues an interrupted bench.
bench: install
	$(BIN)/edgegen aigc bench --out runs/aigc-canonical --total-env-steps 50000 --seeds 3 --workers 2 \
		--eval-every-env-steps 5000 --quiet
	$(BIN)/edgegen aigc bench --out runs/aigc-asp7 --asp-seed 7 --total-env-steps 50000 --seeds 3 --workers 2 \
		--eval-every-env-steps 5000 --algos random crash_avoid prophet d2sac sb3_dqn sb3_ppo --quiet
	$(BIN)/edgegen aigc speed --out runs/aigc-speed
	$(MAKE) bench-fedtune

# Federated fine-tuning: LoRA on both tiers (every method, 3 seeds) + device selection on digits (issue 3),
# then KD across modalities with its T x λ sweep (issue 4), then unlearning on digits (issue 5, part).
# About 40 min on 2 cores.
bench-fedtune: install
	$(BIN)/edgegen fedtune lora bench --tier digits --out runs/fedtune-lora-digits --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen fedtune lora bench --tier digits --out runs/fedtune-lora-digits-random --methods hetlora_size \
		--selection random --clients-per-round 5 --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen fedtune lora bench --tier digits --out runs/fedtune-lora-digits-deadline --methods hetlora_size \
		--selection deadline --deadline-s 0.25 --clients-per-round 5 --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen fedtune lora bench --tier minilm --out runs/fedtune-lora-minilm --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen fedtune kd bench --out runs/fedtune-kd --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen fedtune unlearn bench --tier digits --out runs/fedtune-unlearn-digits --seeds 3 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

report: install
	$(BIN)/edgegen report runs --out BENCHMARKS.md

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache
