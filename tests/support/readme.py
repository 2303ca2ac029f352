"""The README's installation steps, read from the markers that tag them.

Each step is the fenced code block on the line right after a marker::

    <!-- wsgateway-install: NAME [PATH] -->
    ```python
    ...
    ```

NAME says what the block is (see ``STEPS``); PATH, optional, where it goes in a project made by
``django-admin startproject mysite``, relative to the folder that holds ``manage.py``. Without a
PATH a step goes where ``STEPS`` says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every marker the README must have: its name, what its block is, and its default path.
STEPS: dict[str, tuple[str, str | None]] = {
    "pip": ("the `pip install` command of the package and its extras", None),
    "settings": ("the lines appended to the project's settings", "mysite/settings.py"),
    "asgi": ("the whole asgi.py", "mysite/asgi.py"),
    "urls": ("the whole urls.py", "mysite/urls.py"),
    "view": ("the views: the page, and the view that sends a notification", "mysite/views.py"),
    "template": ("the page's template, which loads the client", "templates/page.html"),
    "run": ("the commands that migrate, make a user and serve the site", None),
    "serve": ("the commands that serve the site with ASGI servers started on their own", None),
}

MARKER = re.compile(r"^<!--\s*wsgateway-install:\s*(?P<name>[\w-]+)(?:\s+(?P<path>\S+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)\s*$")


class ReadmeStepError(AssertionError):
    """A marker is missing, repeated, unknown or not followed by a fenced code block."""


@dataclass(frozen=True)
class Step:
    name: str
    path: str | None
    code: str
    line: int  # of the marker, 1-based


def marker_text(name: str) -> str:
    return f"<!-- wsgateway-install: {name} -->"


def install_steps(readme: str) -> dict[str, Step]:
    """Every step of ``STEPS``, by name; raises ReadmeStepError naming the marker that is wrong."""
    lines = readme.splitlines()
    found: dict[str, Step] = {}
    for index, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        name, number = match["name"], index + 1
        if name not in STEPS:
            raise ReadmeStepError(
                f"README.md line {number}: unknown marker {name!r}; known: {', '.join(STEPS)}"
            )
        if name in found:
            raise ReadmeStepError(
                f"README.md line {number}: {marker_text(name)} again (first on line {found[name].line})"
            )
        found[name] = Step(name, match["path"] or STEPS[name][1], fenced_block(lines, index, name), number)
    missing = [name for name in STEPS if name not in found]
    if missing:
        raise ReadmeStepError(
            "README.md has no "
            + "; no ".join(f"{marker_text(name)} ({STEPS[name][0]})" for name in missing)
            + ": put it on the line just before that step's fenced code block"
        )
    return found


def fenced_block(lines: list[str], marker_index: int, name: str) -> str:
    """The code of the fenced block that starts on the line after the marker."""
    number = marker_index + 1
    following = lines[marker_index + 1] if marker_index + 1 < len(lines) else ""
    opening = FENCE.match(following.strip())
    if not opening:
        raise ReadmeStepError(
            f"README.md line {number}: {marker_text(name)} is not followed by a fenced code block on the "
            f"next line (found {following!r})"
        )
    fence = opening["fence"]
    for end in range(marker_index + 2, len(lines)):
        if lines[end].strip() == fence:
            code = "\n".join(lines[marker_index + 2 : end])
            if not code.strip():
                raise ReadmeStepError(
                    f"README.md line {number}: the code block after {marker_text(name)} is empty"
                )
            return code + "\n"
    raise ReadmeStepError(
        f"README.md line {number}: the code block after {marker_text(name)} is never closed"
    )


PIP_INSTALL = re.compile(r"""^pip install ["']?(?P<target>[^\s"'\[]+)\[(?P<extras>[\w,-]+)\]["']?$""")


def pip_install(step: Step) -> re.Match[str]:
    """The README's one ``pip install "<target>[extras]"`` line."""
    commands = [line.strip() for line in step.code.splitlines() if line.strip() and not line.startswith("#")]
    match = PIP_INSTALL.match(commands[0]) if len(commands) == 1 else None
    if not match:
        raise ReadmeStepError(
            f"README.md line {step.line}: {marker_text('pip')} must mark one `pip install "
            f'"<package>[<extras>]"` line, not {step.code!r}'
        )
    return match


def pip_extras(step: Step) -> list[str]:
    """The extras the README's one ``pip install "<package>[extras]"`` line installs."""
    return pip_install(step)["extras"].split(",")


#: What pip installs without asking a package index for a name: a folder, a wheel or a VCS URL.
LOCAL_TARGET = re.compile(r"^(?:\.{1,2}/|/|~/|git\+)|\.whl$")


def pip_target_is_a_name(step: Step) -> bool:
    """Whether the README's ``pip install`` asks the package index for a name (``wsgateway``), which
    installs whatever is registered under it, rather than a checkout, a wheel or a repository."""
    return not LOCAL_TARGET.search(pip_install(step)["target"])
