# The front door. Every target creates/uses .venv itself; nothing else is needed on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast test-containers images base-image serve stop pipeline components faults-report bench bench-quality bench-speed bench-serving lint clean

# --no-compile: byte-compiling every installed module took 40 of the install's 100 s here; Python
# compiles the few it imports on first use (the Docker images, read-only at run time, keep pip's default).
$(STAMP): pyproject.toml constraints.txt  # timed: `mlic demo` reports it
	started=$$(date +%s) && \
	{ test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
	$(BIN)/python -m pip install -q --upgrade pip && \
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e ".[dev]" && \
	echo $$(( $$(date +%s) - started )) > $(VENV)/.install-seconds
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install mlic with its pinned dependencies

demo: install  ## the whole pipeline on the embedded benchmark, a live endpoint answering, and a timing summary
	$(BIN)/mlic demo

test: install  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest

test-fast: install  ## unit tests only
	$(BIN)/pytest -m "not slow and not container"

# The images (docs/operations.md, section 2). REGISTRY=<host/path> pushes them and records their
# digests; PYTHON_IMAGE=<base> (deploy/base-image.sh makes one offline); TORCH_INDEX=<index> gives
# the serving image torch from there (a CPU-only build); CA_BUNDLE=<pem> for pip behind a TLS proxy;
# DOCKER=<cli> a docker CLI with BuildKit.
images: install  ## build the runtime and serving images; `mlic pipeline compile` takes the runtime image from the record
	$(BIN)/mlic pipeline images $(if $(REGISTRY),--registry $(REGISTRY)) \
		$(if $(PYTHON_IMAGE),--python-image $(PYTHON_IMAGE)) \
		$(if $(TORCH_INDEX),--serving-torch-index $(TORCH_INDEX)) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE)) \
		$(if $(DOCKER),--docker $(DOCKER))

base-image:  ## a Python 3.11 base image from Debian packages (debootstrap, root): no image registry needed
	bash deploy/base-image.sh

test-containers: images  ## the images' tests (marked `container`): needs a running Docker engine
	$(BIN)/pytest -m container

serve: install  ## start TorchServe with the packaged model and leave it running (`make stop` ends it)
	$(BIN)/mlic serve

stop: install
	$(BIN)/mlic serve --stop

# IMAGE=<registry>/mlic-runtime@sha256:<digest> for a cluster; without it the default tag, for a look at the IR.
pipeline: install  ## compile the Kubeflow pipeline to pipelines/compiled/mlic.yaml
	$(BIN)/mlic pipeline compile $(if $(IMAGE),--image $(IMAGE),--allow-mutable-tag)

faults-report: install  ## run the fault-injection tests (marked `fault`) and write bench/results/faults.md
	MLIC_FAULTS_REPORT=bench/results/faults.md $(BIN)/pytest -m fault

# The committed specs name the default tag as a placeholder (not the image `make images` recorded
# here): users set their digest per task.
components: install  ## regenerate the reusable kfp component specs in components/
	$(BIN)/mlic pipeline components --allow-mutable-tag \
		--image "$$($(BIN)/python -c 'from mlic.kubeflow.settings import DEFAULT_IMAGE; print(DEFAULT_IMAGE)')"

bench: bench-quality bench-speed

bench-quality: install
	$(BIN)/python bench/quality.py

bench-speed: install
	$(BIN)/python bench/speed.py

bench-serving: install  ## TorchServe under load (needs `mlic package` first): bench/results/serving.{md,json,png}
	nice $(BIN)/python bench/serving.py

lint: install  ## ruff (lint + format check) on the code, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data/prepared artifacts reports .mlic   # data/raw/ holds the datasets under DVC
