# The README's two commands: `make reproduce` (the paper's experiments) and `make test`.
# Each creates .venv and installs gnuq (with the extras test, text, llm) when it is missing or
# pyproject.toml or constraints.txt changed, at the versions constraints.txt pins (the cache keys
# of the committed paper runs name them). Model and data wheels are fetched by the experiments
# that need them.
# The suite runs on two xdist workers (the CI machine has two cores), one test file per worker at
# a time, so a file's module fixtures run once.
PYTHON ?= python3
PROFILE ?= quick
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test reproduce smoke bench clean distclean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,text,llm]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2 --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; exit 1; fi; \
	exit $$rc

reproduce: $(STAMP)
	$(PY) -m experiments.reproduce --profile $(PROFILE)

smoke: $(STAMP)
	$(PY) -m experiments.reproduce --profile smoke

bench: $(STAMP)
	$(PY) benchmarks/gradient_norms.py
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/mcmc.py
	$(PY) benchmarks/laplace.py
	$(PY) benchmarks/scaling_gradients.py
	$(PY) benchmarks/cost.py

clean:  # cached intermediate results and tool caches; figures/ is committed and kept
	rm -rf results .pytest_cache .ruff_cache build gnuq.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
