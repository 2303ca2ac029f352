# `make run` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-fast matrix lint docs package typecheck-js messages bench soak production-shape clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e ".[daphne,redis]" --group dev
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_users
	@echo "Serving http://$(HOST):$(PORT)/ (in-process channel layer, SQLite; a Tasks worker sends the e-mails)"
	@# The worker (the Tasks database backend's) runs beside daphne. Ctrl-C reaches both (db_worker sets
	@# its own SIGINT handler, though sh starts a background job with SIGINT ignored); the trap stops the
	@# worker too when daphne ends any other way.
	@export WSGATEWAY_SITE_URL=http://$(HOST):$(PORT); \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py db_worker --no-reload & worker=$$!; \
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) project.asgi:application

# pytest exits with 5 when it collected no tests: that fails too, and says so.
# Both run on PYTEST_WORKERS processes (pytest-xdist; 0: none, in pytest's own process, for -s or --pdb).
PYTEST_WORKERS ?= 2
PYTEST_RUN = $(PY) -m pytest -n $(PYTEST_WORKERS)
NO_TESTS = { status=$$?; [ $$status -ne 5 ] || echo "make $@: pytest collected no tests" >&2; exit $$status; }

# The whole suite. --dist loadfile: a module's tests on one worker, so a module's servers start once.
# The tests that start servers are safe side by side: each takes its ports from the OS, its database and
# files are its own (a worker's tmp_path, logs named by port). (--dist loadgroup, which would have kept
# them on one worker, groups nothing on pytest 9.2: pytest-xdist issue 1386.)
# The inbox's browser tests inject axe-core from node_modules/ (package.json): the suite installs it where
# npm is (.ci/run installs it); without npm, those tests fail and say so rather than skip.
NODE_FOR_TESTS := $(if $(shell command -v npm 2>/dev/null),node_modules/.installed)
test: install $(NODE_FOR_TESTS)
	$(PYTEST_RUN) --dist loadfile $(PYTEST_ARGS) || $(NO_TESTS)

# The edit-test loop: the tests that need no live server, browser, PostgreSQL or package index, and
# none past about five seconds (the markers in pyproject.toml): 1,842 tests, 57 s on two cores.
FAST_TESTS = not daphne and not redis and not servers and not packaging and not browser and not postgres and not slow
test-fast: install
	$(PYTEST_RUN) -m "$(FAST_TESTS)" $(PYTEST_ARGS) || $(NO_TESTS)

# The other cells of the test matrix (noxfile.py): Django 6.0 and 6.1, and 5.2 on Python 3.12 and 3.13,
# each in its own virtualenv under .nox/. The primary cell (3.11, Django 5.2) is `make test`.
# A Python missing here skips its cells with a warning; NOX_ARGS="-s 'tests(py3.13-django6.1)'" picks one.
matrix: install
	$(VENV)/bin/nox -t matrix $(NOX_ARGS)

# Redis, PostgreSQL and two daphne processes on 127.0.0.1 (ports 8001 and 8002): see docs/processes.md.
production-shape: install
	$(PY) scripts/production_shape.py

# The benchmark (bench/): prints a table, writes bench-results/<timestamp>/ and bench-results/latest.json.
# BENCH_ARGS="--quick" for a smoke run; "--only inprocess,stock-inmemory"; see `$(PY) -m bench --help`.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

# The soak (bench/soak.py): N authenticated sockets over several uvicorns (or --server daphne, hypercorn) on one Redis for a set time, under
# notify() at a rate, broadcasts and reconnects; every seq checked against the database, latency, RSS over
# time, each server's collection pauses and resyncs. Prints a table, writes bench-results/soak-<timestamp>.json;
# exits 1 when a target of issue 24 is missed. Opt-in size: the default is 2,000 sockets over 2 uvicorns for
# 60 s; the issue's is SOAK_ARGS="--sockets 20000 --processes 4 --duration 180" (8 to 10 minutes here).
SOAK_ARGS ?=
soak: install
	$(PY) -m bench.soak $(SOAK_ARGS)

lint: install typecheck-js docs
	$(VENV)/bin/ruff check wsgateway project tests scripts bench noxfile.py
	$(VENV)/bin/ruff format --check wsgateway project tests scripts bench noxfile.py
	$(VENV)/bin/mypy wsgateway

# The documentation site (mkdocs.yml) into site/. Strict: a broken link or anchor, or a page missing from
# the nav, fails the build, and with it `make lint` and CI.
docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The sdist and, built from it, the wheel, in dist/ (emptied first); twine checks both as PyPI would take
# them (--strict: a warning, such as a README that will not render, fails too).
package: install
	rm -rf dist
	$(PY) -m build --quiet --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

# tsc (pinned in package.json, installed by `npm ci` into node_modules/) checks the declarations of
# wsgateway.js against tests/js/. It needs node and npm; without them it fails and says so, unless
# TYPECHECK_JS=skip (what .ci/run passes when it could not install them), which skips it loudly.
TYPECHECK_JS ?= run
NEED_NODE = command -v node >/dev/null && command -v npm >/dev/null || { \
	echo "make typecheck-js: node and npm are needed (Debian: apt-get install nodejs npm)," \
		"or run with TYPECHECK_JS=skip" >&2; exit 1; }

node_modules/.installed: package.json package-lock.json
	@$(NEED_NODE)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

ifeq ($(TYPECHECK_JS),skip)
typecheck-js:
	@echo "make typecheck-js: SKIPPED (TYPECHECK_JS=skip): the TypeScript declarations are NOT checked" >&2
else
typecheck-js: node_modules/.installed
	@$(NEED_NODE)
	node_modules/.bin/tsc -p tsconfig.json
endif

# The catalogs of the words a client reads (wsgateway/locale/, see docs/protocol.md, "Languages"):
# extract the messages into each language's .po, then compile the .mo files the package ships.
# Both steps need GNU gettext (Debian: apt-get install gettext). LOCALES="de fr" adds a language.
LOCALES ?= de
messages: install
	cd wsgateway && $(abspath $(PY)) -m django makemessages $(foreach l,$(LOCALES),-l $(l)) \
		--add-location=never --no-obsolete
	cd wsgateway && $(abspath $(PY)) -m django compilemessages

clean:
	rm -rf $(VENV) .nox node_modules db.sqlite3 test-output bench-results site dist build *.egg-info
