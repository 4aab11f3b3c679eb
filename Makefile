# Both README commands do their own setup: a virtual environment in $(VENV) with the
# project installed editable. torch is installed first from $(TORCH_SPEC) when missing
# (a CPU wheel by default; e.g. `make test TORCH_SPEC=torch` for a CUDA build).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-precision test-slow lint demo bench learning-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,atari,envpool,contrib,tune]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# The suite twice more, with precision="auto" forced to fp32 and then to bf16 (emulated where the
# CPU lacks native bf16: slower, still correct), so both paths pass whatever processor runs it.
test-precision: $(STAMP)
	WORLDMODEL_AUTO_PRECISION=fp32 $(BIN)/python -m pytest -q
	WORLDMODEL_AUTO_PRECISION=bf16 $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

demo: $(STAMP)
	$(BIN)/python -m experiments.demo

bench: $(STAMP)
	$(BIN)/python -m experiments.bench

# Slow (~30 min on 2 cores): latent PPO on CarRacing-v3 must beat a random policy on fixed tracks.
learning-check: $(STAMP)
	$(BIN)/python -m pytest -m learning tests/test_learning_check.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
