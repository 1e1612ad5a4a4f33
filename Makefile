# Two commands matter:  `make run`  (set up, build the pool, serve)  and  `make test`.
VENV    ?= .venv
PYTHON  ?= python3
SHARED  ?= ../shared/data
# The torch pin, one for local builds and the image (deploy/Dockerfile installs with it too).
CONSTRAINTS ?= deploy/constraints.txt
PORT    ?= 8080
GRPC_PORT ?= 8081
SPEEDUP ?= 360
PY      := $(VENV)/bin/python
CLI     := $(VENV)/bin/carbon-gateway
LABELS  := $(if $(wildcard $(SHARED)/imagenet_classes.txt),--labels $(SHARED)/imagenet_classes.txt,)
TRACE   := $(wildcard $(SHARED)/carbon/gb_2020_entsoe.csv)
CARBON  := $(if $(TRACE),--carbon-trace $(TRACE) --speedup $(SPEEDUP),)

.PHONY: setup models run test debian clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) torch -e ".[build,local-triton,test]"
	touch $@

setup: $(VENV)/.installed

models: setup
	$(CLI) build-models $(LABELS)

## Set everything up, build the ResNet pool, start a local CPU Triton and the gateway on :$(PORT) (gRPC :$(GRPC_PORT)).
## With ../shared/data present, the GB 2020 carbon trace is replayed live ($(SPEEDUP)x) so the model changes.
run: models
	$(CLI) serve --port $(PORT) --grpc-port $(GRPC_PORT) $(CARBON)

## The tests' real parts from Debian, installed when missing (root or sudo): Prometheus (the metrics tests scrape
## with it), curl (tests/test_readme.py runs the README's commands) and redis-server (the policy-state store's
## tests run against it). command:package pairs.
DEBIAN  := prometheus:prometheus curl:curl redis-server:redis-server
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
debian:
	@missing=""; for pair in $(DEBIAN); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing (needs root)"; \
	  $(SUDO) apt-get install -y --no-install-recommends $$missing >/dev/null || \
	  { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi

## Set everything up, lint, and run the whole test suite (it builds the pool and starts a real tritonserver).
test: setup debian
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) var model_repository/*/ model_repository/*.yaml model_repository/*.json model_repository/*.txt
