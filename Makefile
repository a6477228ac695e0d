# Two commands do all set-up on a fresh machine:
#   make demo   - creates .venv when missing, then traces, prints tables, checks, saves, reloads
#   make test   - creates .venv when missing, runs `make lint`, then the whole default test suite
#   make lint   - the import contracts, ruff and mypy (configured in pyproject.toml)
#   make test-torch TORCH=2.15.0 [TORCHVISION=0.30.0]
#               - the default suite in a side venv .venv-torch-X.Y.Z with that torch
# Every install uses constraints.txt, which pins torch to the CPU wheel (see that file).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-torch bench bench-quick venv clean lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test,zoo]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m fxtrace demo

# `ruff format --check` is not run: 75 of 79 files would be reformatted, most of them owned
# by other work in flight; adopting the formatter is one commit of its own.
# PYTHONPATH: lint-imports reads the package of this checkout, whatever the venv installed.
# All three run even when one fails, so one CI log lists every finding.
lint: $(STAMP)
	@status=0; \
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports || status=1; \
	$(VENV)/bin/ruff check fxtrace tests property_tests benchmarks scripts || status=1; \
	$(VENV)/bin/mypy fxtrace || status=1; \
	exit $$status

test: $(STAMP) lint
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Another torch release in a side venv of its own; .venv and constraints.txt stay untouched.
# torch (and torchvision when TORCHVISION is given) is pinned on the command line in place of
# constraints.txt. A release above this machine's pip cap (/etc/xdg/pip) is a multi-GB
# download from PyPI: run with PIP_CONFIG_FILE=/dev/null to lift the cap for this command.
TORCH_VENV := .venv-torch-$(TORCH)
test-torch:
	@test -n "$(TORCH)" || { echo "usage: make test-torch TORCH=X.Y.Z [TORCHVISION=A.B.C]"; exit 2; }
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	test -f $(TORCH_VENV)/.installed || { \
	  $(TORCH_VENV)/bin/python -m pip install -q "torch==$(TORCH)" \
	    $(if $(TORCHVISION),"torchvision==$(TORCHVISION)") -e '.[test,zoo]' \
	  && touch $(TORCH_VENV)/.installed; }
	$(TORCH_VENV)/bin/python -c 'import torch, fxtrace; print("torch", torch.__version__, "fxtrace", fxtrace.__file__)'
	HYPOTHESIS_PROFILE=ci $(TORCH_VENV)/bin/python -m pytest -q -n 2

bench: $(STAMP)
	$(PY) benchmarks/perf.py

bench-quick: $(STAMP)
	$(PY) benchmarks/perf.py --quick

clean:
	rm -rf $(VENV) .venv-torch-* .pytest_cache .hypothesis build *.egg-info .mypy_cache .ruff_cache .import_linter_cache
