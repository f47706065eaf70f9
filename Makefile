# edgegen: `make run` (main job) and `make test` (fast tier) bootstrap .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install run test test-slow bench bench-fedtune bench-moe bench-scheduling bench-gdm bench-gdm-detect bench-gdm-ddpo bench-cot bench-serve report lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[rl,scale,rllib,fedtune,flower,serve,dev]'
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
	$(MAKE) bench-moe
	$(MAKE) bench-fedtune
	$(MAKE) bench-scheduling
	$(MAKE) bench-cot
	$(MAKE) bench-gdm
	$(MAKE) bench-gdm-detect
	$(MAKE) bench-gdm-ddpo
	$(MAKE) bench-serve

# Federated fine-tuning: LoRA on both tiers (every method, 3 seeds) + device selection on digits (issue 3),
# then KD across modalities with its T x λ sweep (issue 4), then unlearning on both tiers (issue 5).
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
	$(BIN)/edgegen fedtune unlearn bench --tier minilm --out runs/fedtune-unlearn-minilm --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# MoE expert microservices with Lyapunov online device scheduling (issue 6): trains the small MoE LM once
# (cached under runs/cache), then the V sweep, baselines, bound check and overload case. About 10 min on 2 cores.
bench-moe: install
	$(BIN)/edgegen moe bench --out runs/moe --seeds 3 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# CoT microservice deployment (issue 7): MILP labels + diffusion training (cached under runs/cache), held-out bench,
# then the monolithic-vs-microservice case study. About 20 min on 2 cores.
bench-cot: install
	$(BIN)/edgegen cot bench --out runs/cot-bench --quiet
	$(BIN)/edgegen cot case-study --out runs/cot-case-study --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# RL scheduling of DL tasks on heterogeneous agents (issue 11): 10 heuristics + lower bound, masked PPO, RLlib PPO
# on a held-out mix at three loads, online adaptation. About 20-30 min on 2 cores.
bench-scheduling: install
	$(BIN)/edgegen schedule bench --load 0.5 0.8 0.95 --seeds 3 --workers 2 --out runs/schedule-bench --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# Diffusion core (issue 8): central digits DDPM, unconditional and class-conditional, 3 seeds each, against the
# real-vs-real feature-FID floor. About 20 min on 2 cores.
bench-gdm: install
	$(BIN)/edgegen gdm train-bench --out runs/gdm-train-bench --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen gdm fed bench --out runs/gdm-fed-bench --seeds 3 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# Secure collaborative sampling (issue 9): per seed a short central pre-training, a clean and five backdoored
# federated fine-tunes (box, stop sign, blend, TrojDiff, adaptive trigger), then detection at the edge.
# About 25 min on 2 cores.
bench-gdm-detect: install
	$(BIN)/edgegen gdm detect bench --out runs/gdm-detect --seeds 3 --workers 2 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# RL fine-tuning of the digits DDPM, DDPO-style (issue 10): class, digit-set, diversity and multitask rewards plus
# the pretraining-loss sweep, 3 seeds each (base models trained once if missing). About 30 min on 2 cores.
bench-gdm-ddpo: install
	$(BIN)/edgegen gdm ddpo --seeds 3 --workers 2 --out runs/gdm-ddpo --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

# Live AaaS service (issue 12): trains 4 worker DDPMs + D2SAC on their measured utility (cached in the bench
# directory), then a loopback load test per policy and a worker-kill fault run. About 20-25 min on 2 cores.
bench-serve: install
	$(BIN)/edgegen serve bench --out runs/serve-bench --requests 2000 --concurrency 16 --quiet
	$(BIN)/edgegen report runs --out BENCHMARKS.md

report: install
	$(BIN)/edgegen report runs --out BENCHMARKS.md

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache
