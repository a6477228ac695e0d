# Two commands do all set-up on a fresh machine:
#   make demo   - creates .venv when missing, then traces, prints tables, checks, saves, reloads
#   make test   - creates .venv when missing, then runs the whole default test suite
# Every install uses constraints.txt, which pins torch to the CPU wheel (see that file).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test,zoo]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m fxtrace demo

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/trace_vs_jit.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
