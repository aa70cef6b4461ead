# Two commands set everything up on a fresh clone:
#   make demo   installs fulora into .venv and runs the whole pipeline on the embedded default data
#   make test   installs fulora into .venv and runs the test suite (what CI runs), SD 1.5-shape and
#               older-stack checks included
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fulora-installed
# The older stack of the issue-16 check (scripts/check_old_stack.py): transformers 4, peft <= 0.17, diffusers 0.35.
OLD_VENV ?= .venv-old-stack
OLD_PINS := transformers==4.57.6 peft==0.17.1 diffusers==0.35.2 huggingface_hub==0.36.2

.PHONY: install demo test lint bench check-old-stack lower-bounds

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fulora demo --out .fulora-demo

# The fast suite, then the slow checks CI must run: SD 1.5's real shape on the CPU (minutes, ~8 GB), both
# adapter files on an older transformers/peft/diffusers stack (.venv-old-stack, below) and the README's
# CPU commands, executed as written.
test: $(STAMP) $(OLD_VENV)/.installed
	$(BIN)/python -m pytest
	FULORA_OLD_STACK_PYTHON=$(OLD_VENV)/bin/python $(BIN)/python -m pytest -m slow \
		tests/lora/test_sd15_shape.py tests/lora/test_old_stack.py tests/test_readme.py

lint: $(STAMP)
	$(BIN)/ruff check .

# Older-stack check (issue 16): both files of a fresh tiny adapter load with transformers 4.57, peft 0.17
# and diffusers 0.35 (pins in scripts/check_old_stack.py) and give the new stack's pixels. The old packages
# go into .venv-old-stack, which reuses .venv's torch through a .pth file (about 30 s to install).

$(OLD_VENV)/.installed: $(STAMP)
	$(PYTHON) -m venv $(OLD_VENV)
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" > \
		"$$($(OLD_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/fulora_main_venv.pth"
	$(OLD_VENV)/bin/python -m pip install --quiet $(OLD_PINS)
	touch $(OLD_VENV)/.installed

check-old-stack: $(OLD_VENV)/.installed
	$(BIN)/python scripts/check_old_stack.py --old-python $(OLD_VENV)/bin/python

# Every dependency at the lowest version setup.cfg allows, in a throwaway venv, and the core tests
# (docs/dependencies.md; add EXTRAS=train,eval,audit for everything, a large download).
lower-bounds: $(STAMP)
	$(BIN)/python scripts/check_lower_bounds.py $(if $(EXTRAS),--extras $(EXTRAS))
