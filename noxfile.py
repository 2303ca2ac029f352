"""The test matrix: the suite on each supported Django under each Python it supports.

    .venv/bin/nox -t matrix          # the cells besides the primary one (what `make matrix` runs)
    .venv/bin/nox -s tests           # every cell, the primary one included
    .venv/bin/nox -l                 # the cells, by name

The primary cell (Python 3.11, Django 5.2, the whole suite) is what `make test` runs in .venv;
CI runs it there, and the others through `make matrix`, so no cell runs twice. A cell runs only
what can differ with its Django or its Python (the markers are in pyproject.toml):

- the Django 6.x cells (6.0 on 3.12, 6.1 on 3.13): everything but the browser tests, the other
  ASGI servers and the wheel's install (``-m "not browser and not servers and not packaging"``).
  They keep the tests that start daphne and PostgreSQL: the process boundary (Django's login
  views and sessions over HTTP, the ORM's row locks on PostgreSQL) is where a new Django shows,
  and these are its only runs on 6.x. What they leave out does not change with Django: the
  browser tests exercise wsgateway.js in Chromium; uvicorn, hypercorn and granian differ from daphne in
  how they speak ASGI, which the primary cell covers; the wheel's contents are the same.
- the Django 5.2 cells on 3.12 and 3.13: the tests that start no server process, Redis aside
  (``-m "not daphne and not servers and not postgres and not packaging and not browser"``): the
  consumer, the layers (the Redis layer's asyncio client is what a new Python changes most) and
  the domain, in-process. The process boundary on Django 5.2 is the primary cell's.

Every cell runs on two pytest-xdist workers, a module's tests on one of them, as `make test` does
(``--dist loadfile``). On two cores a 6.x cell takes about 5 minutes, a 5.2 cell about 2, each with
its virtualenv (docs/contributing.md).

A Python this machine lacks skips its cells, loudly, rather than failing: CI's machine may have
only 3.11. pyenv keeps versions it does not make global behind shims that refuse to run, so the
interpreters it installed are put on PATH here for nox to find.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"
# Never download an interpreter (nox's default would try): a cell without one skips instead.
nox.options.download_python = "never"
# nox makes a missing interpreter an error when CI is set; here it skips (and says so below).
nox.options.error_on_missing_interpreters = False
nox.options.reuse_venv = "yes"

PRIMARY = ("3.11", "5.2")
#: (python, django) for each cell; Django 6.x needs Python 3.12 or later.
CELLS = [
    PRIMARY,
    ("3.12", "6.0"),
    ("3.13", "6.1"),
    ("3.12", "5.2"),
    ("3.13", "5.2"),
]
#: The cell that also runs mypy (strict): the newest Django, which django-stubs 6.1 supports.
MYPY_CELL = ("3.13", "6.1")


def runs(executable: str) -> bool:
    """Whether ``executable`` starts: a pyenv shim for a version not made global is on PATH but fails."""
    try:
        return subprocess.run([executable, "-c", ""], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_interpreters() -> list[str]:
    """The cells' Pythons that cannot be found, after putting pyenv's installed versions on PATH."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    missing = []
    for version in sorted({python for python, _ in CELLS}):
        name = f"python{version}"
        found = shutil.which(name)
        if found and runs(found):
            continue
        # The newest patch release: 3.12.10 after 3.12.9.
        installed = sorted(
            pyenv_root.glob(f"versions/{version}.*/bin/{name}"),
            key=lambda path: [int(part) if part.isdigit() else -1 for part in path.parts[-3].split(".")],
        )
        if installed and runs(str(installed[-1])):
            os.environ["PATH"] = f"{installed[-1].parent}{os.pathsep}{os.environ['PATH']}"
            continue
        missing.append(version)
    return missing


MISSING = find_interpreters()
if MISSING:
    WARNING = (
        f"\nnoxfile.py: WARNING: no Python {', '.join(MISSING)} on this machine: the cells that need it "
        "are SKIPPED, not run.\n"
    )
    print(WARNING, file=sys.stderr)
    atexit.register(print, WARNING, file=sys.stderr)  # and again under nox's summary


def param(python: str, django: str) -> object:
    """One cell, named ``py3.12-django6.0``; all but the primary one tagged ``matrix``."""
    tags = [] if (python, django) == PRIMARY else ["matrix"]
    return nox.param(python, django, id=f"py{python}-django{django}", tags=tags)


@nox.session
@nox.parametrize("python,django", [param(python, django) for python, django in CELLS])
def tests(session: nox.Session, django: str) -> None:
    """The suite on one Python and one Django release line."""
    session.install("pip>=25.1")  # the first to install a dependency group (--group)
    session.install("-e", ".[daphne,redis]", "--group", "dev", f"django~={django}.0")
    session.run("python", "-m", "django", "--version")
    cell = (session.python, django)
    if cell == PRIMARY:
        selection = []
    elif django == "5.2":
        selection = ["-m", "not daphne and not servers and not postgres and not packaging and not browser"]
    else:
        selection = ["-m", "not browser and not servers and not packaging"]
    # posargs come last: a -m among them replaces the cell's own, a -n the number of workers.
    session.run("python", "-m", "pytest", "-n", "2", "--dist", "loadfile", *selection, *session.posargs)
    if cell == MYPY_CELL:
        session.run("mypy", "wsgateway")
