# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; override for a GPU machine, e.g. TORCH_SPEC='torch==2.13.0' with a CUDA index.
TORCH_SPEC ?= torch==2.13.0
PRESET ?= cpu
OUT ?= runs/demo

.PHONY: setup demo test lint bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[all]'
	touch $@

demo: setup
	$(VENV)/bin/forgetlaw demo --preset $(PRESET) --out $(OUT)

lint: setup
	$(VENV)/bin/ruff check src tests bench

test: setup lint
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/fit.py
	$(PY) bench/train.py

clean-venv:
	rm -rf $(VENV)
