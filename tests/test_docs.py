"""The documentation keeps up with the code: every module of wsgateway/ has its row in
docs/contributing.md's module map ("Repository layout")."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wsgateway"


def modules() -> list[str]:
    """Each module of the package, as its path under wsgateway/ (``layers/base.py``); migrations and the
    ``__init__.py`` of subpackages (their modules have rows of their own) left out."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if "migrations" in relative.parts or (path.name == "__init__.py" and relative.parent != Path(".")):
            continue
        found.append(relative.as_posix())
    return found


def module_map() -> set[str]:
    """The modules the map's table names: the first cell of each row, as `` `layers/base.py` ``."""
    text = (ROOT / "docs" / "contributing.md").read_text()
    section = text.split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+\.py)` \|", section, re.MULTILINE))


def test_every_module_of_the_package_has_a_row_in_the_module_map() -> None:
    assert modules(), "no module found under wsgateway/"
    missing = [module for module in modules() if module not in module_map()]
    assert not missing, (
        f"docs/contributing.md, 'Repository layout': add a row for {', '.join(missing)} "
        "(what it is, and which of wsgateway's modules it imports)"
    )


def test_the_module_map_names_no_module_that_is_gone() -> None:
    gone = sorted(module_map() - set(modules()))
    assert not gone, f"docs/contributing.md, 'Repository layout': {', '.join(gone)} no longer exist"
