# Two commands do all set-up on a fresh machine: `make dev` and `make test`.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test test-fast install lint bench fuzz load compose-check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	@$(VENV)/bin/uv pip install --python $(PY) -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the product on its embedded stack (Temporal dev server + UI, SQLite, SeaweedFS, local fleet, worker, API)
dev: $(STAMP)
	$(PY) -m cli dev

## The whole test suite (starts every server it needs): the quick tests, then the slow ones (process stacks,
## chaos, browser), each on two processes (pytest-xdist; every process starts its own servers on free ports)
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 -m "not slow"
	$(PY) -m pytest -q -p no:cacheprovider -n 2 -m slow --durations=10

## The inner loop: every test not marked slow (no stacks of API/worker processes, no e2e, chaos or browser)
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 -m "not slow"

## Every package is type-checked; ruff (lint + format) covers the whole tree, tests, bench and scripts included
TYPED := api services activities workflows models carbon scheduling fleets core cli worker.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(TYPED)

bench: $(STAMP)
	$(PY) bench/bench_plan.py
	$(PY) bench/bench_forecast.py

## Validate docker-compose.yml without a Docker engine (Compose schema + our own rules)
compose-check: $(STAMP)
	$(PY) scripts/compose_check.py docker-compose.yml

## Longer schemathesis run (override FUZZ_EXAMPLES / FUZZ_STEPS)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} FUZZ_STEPS=$${FUZZ_STEPS:-20} $(PY) -m pytest -q -p no:cacheprovider tests/api/test_fuzz_api.py

## 1,000 submissions through the API on a stack of its own; prints a JSON summary
load: $(STAMP)
	$(PY) bench/load_jobs.py --jobs 1000

clean:
	rm -rf .data
