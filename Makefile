# Two entry points for a fresh machine: `make run` (set up + demo end to end)
# and `make test` (set up + test suite). Both re-use an existing .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: setup run test gpu-check slurm-tools lint format bench clean

setup: $(STAMP)

$(STAMP): envs/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r envs/requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The demo's training and prediction jobs run on one core each, side by side: most of a
# small job is single-threaded (its start, data loading), so two at once finish sooner.
run: setup
	$(BIN)/snakemake --cores $(CORES) --set-threads train=1 predict_scene=1

test: setup
	$(BIN)/pytest

# GPU acceptance check: one line and exit 0 where no CUDA device exists.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# Debian's SLURM and munge, for tests/workflow/test_slurm.py (root; the tests skip without them).
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
slurm-tools:
	command -v slurmctld >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SLURM_PACKAGES) >/dev/null; }

lint: setup
	$(BIN)/ruff check scripts tests benchmarks
	$(BIN)/ruff format --check scripts tests benchmarks
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint

format: setup
	$(BIN)/ruff check --fix scripts tests benchmarks
	$(BIN)/ruff format scripts tests benchmarks
	$(BIN)/snakefmt workflow

bench: setup
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf results .snakemake
