# make demo: set everything up and run the demo.  make test: set up and run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system demo test bench clean

setup: system $(STAMP)
	$(VENV)/bin/hlx warmup

system:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml setup.py hlx_vulkan/vk/_record.c
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/hlx info
	$(PY) examples/vector_add.py
	$(VENV)/bin/hlx train digits --seed 0 --out run

test: setup
	HLX_VALIDATION=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info run
