# Every target creates (once) and reuses a local virtual environment in .venv.
# Python 3.11 to 3.13: the first of python3.11, python3.12, python3.13 on PATH (PYTHON=...).
PYTHON ?= $(firstword $(shell command -v python3.11 python3.12 python3.13 2>/dev/null) python3.11)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
# Where torch comes from when pip has no wheel of it locally: PyTorch's CPU index on a machine
# without an NVIDIA GPU (PyPI's Linux torch is a multi-GB CUDA build), else PyPI.
TORCH_INDEX_URL ?= $(if $(shell command -v nvidia-smi 2>/dev/null),https://pypi.org/simple,https://download.pytorch.org/whl/cpu)

.PHONY: setup deploy-tools demo test test-heavy bench report lint clean rehearse-compose

setup: $(STAMP) deploy-tools

# tests/deploy validates the compose files with `docker-compose config` (Debian's
# docker-compose v1, offline; no Docker engine needed), else with the compose-spec JSON schema.
deploy-tools:
	@if command -v docker-compose >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing docker-compose (Debian) for tests/deploy"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends docker-compose >/dev/null; } \
		|| echo "warning: docker-compose not installed; tests/deploy use the JSON schema"; \
	else echo "note: no docker-compose (needs root + apt-get); tests/deploy use the JSON schema"; fi

# torch is installed first with its pin, so that no later resolution can pull a CUDA build:
# a wheel that pip finds locally (its find-links; its dependencies come with the next step),
# else from TORCH_INDEX_URL.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need Python 3.11, 3.12 or 3.13 on PATH (or PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-index --no-deps torch==$(TORCH_VERSION) 2>/dev/null \
		|| $(PY) -m pip install -q -c constraints.txt torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX_URL)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m service.demo

test: $(STAMP) deploy-tools
	$(PY) -m pytest -q

# The end-to-end rehearsals beyond make test's 15-minute budget (marker `heavy`: the process
# topology, reproduce, two-node studies, the CLI against a real server); .ci/run runs them too.
test-heavy: $(STAMP) deploy-tools
	$(PY) -m pytest -q -m heavy

bench: $(STAMP)
	$(PY) bench/loss_bench.py

# The results report (docs/results.md + plots) from Fashion-MNIST runs; resumable (runs/report).
FMNIST := /usr/share/datasets/fashion-mnist
report: $(STAMP)
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 dataset-fashion-mnist; \
	  else \
	    echo "make report needs Debian's dataset-fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist' (or be root)"; exit 1; \
	  fi; \
	fi
	$(PY) bench/report.py

# docker-compose.yml built and run for real on a Docker engine (installed and started when
# missing, as root); not part of `make test`. deploy/rehearse-compose.sh lists its options.
rehearse-compose: $(STAMP)
	bash deploy/rehearse-compose.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
