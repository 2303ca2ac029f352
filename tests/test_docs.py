"""The documentation keeps up with the code: every module of wsgateway/ has its row in
docs/contributing.md's module map ("Repository layout"), and the row names what the module imports."""

from __future__ import annotations

import ast
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


def imported(path: Path) -> list[str]:
    """The modules of wsgateway that ``path`` imports, anywhere in it (at the top, in a function, under
    ``TYPE_CHECKING``): dotted under the package (``layers.base``)."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts)
    package = parts[:-1]  # the package the module is in (the module itself, for an __init__.py)
    if parts[-1] == "__init__":
        parts = package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == "wsgateway" or (node.module or "").startswith("wsgateway."):
                target = node.module.removeprefix("wsgateway").removeprefix(".")  # type: ignore[union-attr]
            else:
                continue
            for alias in node.names:
                name = f"{target}.{alias.name}" if target else alias.name
                is_module = (PACKAGE / f"{name.replace('.', '/')}.py").exists() or (
                    PACKAGE / name.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(name if is_module else target)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("wsgateway.") for a in node.names if a.name.startswith("wsgateway.")
            )
    found.discard(".".join(parts))
    found.discard("")
    return sorted(found)


def test_each_rows_imports_are_what_the_module_imports() -> None:
    text = (ROOT / "docs" / "contributing.md").read_text()
    section = text.split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+\.py)` \| .* \| (.*) \|$", section, re.MULTILINE))
    wrong = []
    for module in modules():
        written = sorted(re.findall(r"`([^`]+)`", rows.get(module, "")))
        if written != (actual := imported(PACKAGE / module)):
            wrong.append(f"{module}: the map says {written or 'nothing'}, the code imports {actual}")
    assert not wrong, "docs/contributing.md, 'Repository layout':\n" + "\n".join(wrong)


def markdown_files() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*.md")), ROOT / "bench" / "README.md"]


def test_every_nginx_block_passes_the_browsers_host_with_its_port() -> None:
    """``$host`` is the host name without the port: behind a proxy on any other port than 80 or 443, the
    login's POST fails Django's CSRF origin check and the page's socket URL loses its port."""
    lines = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in markdown_files()
        for line in path.read_text().splitlines()
        if re.search(r"proxy_set_header\s+Host\s", line)
    ]
    assert lines, "no nginx block in the docs: this test looks in the wrong place"
    assert [line for line in lines if "$http_host;" not in line] == []


def test_no_page_quotes_a_files_number_of_lines() -> None:
    """A count of lines goes stale with the next change: client.md said "about 880 lines" of a 1248."""
    quoted = [
        f"{path.relative_to(ROOT)}: {match[0]}"
        for path in markdown_files()
        for match in re.finditer(r"\b\d[\d,]* lines\b", path.read_text())
    ]
    assert quoted == []


def test_no_page_has_a_paragraph_twice() -> None:
    repeated = []
    for path in markdown_files():
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text()) if len(p.strip()) > 80]
        repeated += [
            f"{path.relative_to(ROOT)}: {p[:60]}" for p in set(paragraphs) if paragraphs.count(p) > 1
        ]
    assert repeated == []


def test_every_long_page_has_sections() -> None:
    """The site's table of contents is made of a page's ``##`` headings: install.md had none."""
    flat = [
        path.name
        for path in sorted((ROOT / "docs").glob("*.md"))
        if len(path.read_text().splitlines()) > 40 and not re.search(r"^## ", path.read_text(), re.M)
    ]
    assert flat == []
