# Two commands set everything up on a fresh clone:
#   make demo   installs fulora into .venv and runs the whole pipeline on the embedded default data
#   make test   installs fulora into .venv and runs the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fulora-installed

.PHONY: install demo test lint bench lower-bounds

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fulora demo --out .fulora-demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# Every dependency at the lowest version setup.cfg allows, in a throwaway venv, and the core tests
# (docs/dependencies.md; add EXTRAS=train,eval,audit for everything, a large download).
lower-bounds: $(STAMP)
	$(BIN)/python scripts/check_lower_bounds.py $(if $(EXTRAS),--extras $(EXTRAS))
