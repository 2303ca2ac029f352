"""MkDocs hooks: the pages whose files live outside docs/, and the links to and from them.

README.md, SECURITY.md, CHANGELOG.md and bench/README.md stay where GitHub, the package index and the
benchmark's users look for them, and link to docs/ by relative paths (the docs pages link back with
``../``). MkDocs knows only docs/, where such a link points at nothing. So these hooks add each of those
files to the site as a page of its own (read in place, not copied into docs/), and rewrite every relative
link of every page by where its target really is in the repository: a file in docs/ becomes a link to that
page, a file listed in OUTSIDE a link to its page. Anything else is left as written, for MkDocs to report:
``mkdocs build --strict`` then fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

#: Files outside docs/ that the site shows: their path in the repository -> their page in the site.
OUTSIDE = {
    "README.md": "quickstart.md",
    "SECURITY.md": "security.md",
    "CHANGELOG.md": "changelog.md",
    "bench/README.md": "bench.md",
}

#: A Markdown link or image target: ](target#anchor). The target is rewritten; the anchor kept.
LINK = re.compile(r"(?P<open>\]\()(?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?(?P<close>\))")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs(config: MkDocsConfig) -> str:
    """docs_dir relative to the repository root, as a POSIX path ("docs")."""
    return Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for source, page in OUTSIDE.items():
        if files.get_file_from_path(page) is not None:
            raise ValueError(f"docs/{page} exists: the page of {source} would replace it")
        files.append(File.generated(config, page, abs_src_path=str(_root(config) / source)))
    return files


def _where_in_site(path: str, docs: str) -> str | None:
    """The site page (a path under docs_dir) of a repository path, or None if the site has no page of it."""
    if path.startswith(docs + "/"):
        return path[len(docs) + 1 :]
    return OUTSIDE.get(path)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    docs = _docs(config)
    in_site = page.file.src_uri
    in_repository = next((src for src, dest in OUTSIDE.items() if dest == in_site), f"{docs}/{in_site}")
    repository_dir = posixpath.dirname(in_repository)
    site_dir = posixpath.dirname(in_site)

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if ":" in target or target.startswith("/"):  # a URL with a scheme, or an absolute path
            return match[0]
        real = posixpath.normpath(posixpath.join(repository_dir, target))
        page_in_site = _where_in_site(real, docs)
        if page_in_site is None:
            return match[0]
        new = posixpath.relpath(page_in_site, site_dir or ".")
        return f"{match['open']}{new}{match['anchor'] or ''}{match['close']}"

    return LINK.sub(rewrite, markdown)


def on_serve(server: Any, config: MkDocsConfig, builder: Any, **kwargs: Any) -> Any:
    # `mkdocs serve` watches docs/ only; rebuild when an outside page changes too.
    for source in OUTSIDE:
        server.watch(str(_root(config) / source))
    return server
