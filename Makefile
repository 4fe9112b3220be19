# robustxai — the two commands a newcomer needs: `make audit` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.robustxai-installed

.PHONY: audit test smoke lint bench clean browser

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PKGS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@touch $(STAMP)

# An interrupted audit resumes; FRESH=1 replaces runs/default (needed after an update changed the default config).
audit: $(STAMP)  ## set up, then run the default audit on the built-in benchmark
	$(VENV)/bin/robustxai audit --profile default --out runs/default $(if $(FRESH),--fresh,)

smoke: $(STAMP)  ## a tiny audit (< 1 min)
	$(VENV)/bin/robustxai audit --profile smoke --out runs/smoke

test: $(STAMP) browser  ## set up, then run the whole test suite (slow tests included)
	$(VENV)/bin/python -m pytest

# Debian's chromium for the browser tests; without root (or apt) they are skipped with a reason, not failed.
browser:  ## install Debian's chromium for the browser tests when it is missing
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser tests will be skipped"

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict src/robustxai/results src/robustxai/metrics src/robustxai/manipulate src/robustxai/claims

bench: $(STAMP)  ## the speed benchmarks recorded in BENCHMARKS.md
	$(VENV)/bin/python benchmarks/attacks.py
	$(VENV)/bin/python benchmarks/explainers.py --quick
	$(VENV)/bin/python benchmarks/manipulation.py
	$(VENV)/bin/python benchmarks/audit.py

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
