# The two commands of the quick start: `make demo` and `make test`.
# Each creates .venv and installs the project from its own files when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/volbot demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Before the first release the schema is one baseline migration, rewritten from the models.
schema: install
	$(BIN)/python -c 'from store.db import regenerate_baseline as r; print(r())'

clean:
	rm -rf $(VENV) instance .pytest_cache
