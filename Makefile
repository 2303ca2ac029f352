# `make run` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test matrix lint bench production-shape clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e ".[daphne,redis]" --group dev
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_users
	@echo "Serving http://$(HOST):$(PORT)/ (in-process channel layer, SQLite)"
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) project.asgi:application

# pytest exits with 5 when it collected no tests: that fails too, and says so.
test: install
	$(PY) -m pytest $(PYTEST_ARGS) || { status=$$?; \
		[ $$status -ne 5 ] || echo "make test: pytest collected no tests" >&2; exit $$status; }

# The other cells of the test matrix (noxfile.py): Django 6.0 and 6.1, and 5.2 on Python 3.12 and 3.13,
# each in its own virtualenv under .nox/. The primary cell (3.11, Django 5.2) is `make test`.
# A Python missing here skips its cells with a warning; NOX_ARGS="-s 'tests(py3.13-django6.1)'" picks one.
matrix: install
	$(VENV)/bin/nox -t matrix $(NOX_ARGS)

# Redis, PostgreSQL and two daphne processes on 127.0.0.1 (ports 8001 and 8002): see the README.
production-shape: install
	$(PY) scripts/production_shape.py

# The benchmark (bench/): prints a table, writes bench-results/<timestamp>/ and bench-results/latest.json.
# BENCH_ARGS="--quick" for a smoke run; "--only inprocess,stock-inmemory"; see `$(PY) -m bench --help`.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check wsgateway project tests scripts bench noxfile.py
	$(VENV)/bin/ruff format --check wsgateway project tests scripts bench noxfile.py
	$(VENV)/bin/mypy wsgateway

clean:
	rm -rf $(VENV) .nox db.sqlite3 test-output bench-results
