# The two commands of the quick start: `make demo` and `make test`.
# Each creates .venv and installs the project from its own files when needed, at the versions
# in requirements.lock (`-c`: the lock constrains, pyproject.toml says what is installed).
# The first Python 3.11+ on PATH (override with `make PYTHON=/path/to/python3.12 test`).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.installed-runtime
LOCK := requirements.lock

.PHONY: install demo test lint lock migration clean

$(STAMP): pyproject.toml $(LOCK)
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required: none found on PATH" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "could not create $(VENV): on Debian/Ubuntu install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# `make demo` needs only the runtime dependencies: on a fresh clone the test extras (browser
# driver, …) and compiling every installed file would double the time before it serves.
$(RUNTIME): pyproject.toml $(LOCK)
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required: none found on PATH" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "could not create $(VENV): on Debian/Ubuntu install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install -q --no-compile -c $(LOCK) -e .
	touch $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/volbot demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The next schema migration, generated from the models: `make migration MESSAGE="add x to y"`.
# Review it, add any data migration by hand, and commit it; released migrations never change.
migration: install
	@test -n "$(MESSAGE)" || { echo 'usage: make migration MESSAGE="what changes"' >&2; exit 2; }
	$(BIN)/python -c 'import sys; from store.db import new_migration as m; print(m(sys.argv[1]))' "$(MESSAGE)"

# ruff (lint and import order), the import contracts (the arrows between packages), both
# configured in pyproject.toml; and every `# noqa` names its codes and says why.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	@if git ls-files -z '*.py' | xargs -0 grep -nE '# noqa(:[ A-Z0-9,]*)?$$'; then \
	  echo "a '# noqa' above names no code or gives no reason: write '# noqa: CODE - why'" >&2; exit 1; fi

# Rewrites requirements.lock: the newest versions pyproject.toml allows, runtime and test
# extras, for Python 3.11. Run after changing a dependency; commit both files.
lock: install
	$(BIN)/python -m pip install -q 'pip-tools>=7.4,<8'
	$(BIN)/python -m piptools compile --quiet --upgrade --extra test --strip-extras --no-emit-index-url \
	  --no-emit-trusted-host --no-emit-find-links --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) instance .pytest_cache
