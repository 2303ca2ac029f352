"""The README's installation, done to the letter: the wheel in a fresh virtualenv, a project made by
``django-admin startproject mysite``, the README's snippets (read from their markers, see
``tests/support/readme.py``), a login, the README's view, and its notification on a socket, with the
site served each way the README serves it: ``runserver``, and daphne and uvicorn started on their own
(which serve no static files by themselves: the page's script must still load).

The first tests read the markers only (no network, no processes). The last build the wheel from an
sdist (as pip would from the README's checkout), install it with the README's extras and uvicorn's
from the package index (only the dependencies: wsgateway itself is not there), and are marked
``packaging`` and ``daphne``: about a minute with pip's cache warm; the first run downloads daphne and
its dependencies (Twisted, autobahn, cryptography) and uvicorn's. They skip only when the package index
cannot be reached.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM_ARGS, NO_CHROMIUM, chromium_executable
from tests.support.readme import (
    ReadmeStepError,
    Step,
    install_steps,
    pip_extras,
    pip_target_is_a_name,
)
from tests.support.servers import (
    HOST,
    OUTPUT,
    ROOT,
    HttpSession,
    connect_frames,
    free_port,
    recv_json,
    wait_for_port,
    ws_connect,
)

README = ROOT / "README.md"
#: What ``{% wsgateway_inbox %}`` loads from the static files, and a line each file holds.
INBOX_FILES = {
    "/static/wsgateway/wsgateway.js": "class WSGateway",
    "/static/wsgateway/inbox.js": "customElements.define",
    "/static/wsgateway/inbox.css": "wsgateway-inbox",
}
USERNAME, PASSWORD = "alice", "alice-password-for-the-readme"


# -- the markers ---------------------------------------------------------------------------------


def test_the_readme_marks_every_installation_step() -> None:
    steps = install_steps(README.read_text())
    assert "daphne" in pip_extras(steps["pip"]), "the README's pip install must bring the daphne extra"
    # wsgateway has no release on the index: a name there would be whoever registers it.
    assert not pip_target_is_a_name(steps["pip"]), steps["pip"].code


MARKED = """\
Intro.

<!-- wsgateway-install: pip -->
```sh
pip install "wsgateway[daphne]"
```
<!-- wsgateway-install: settings -->
```python
WSGATEWAY = {}
```
<!-- wsgateway-install: asgi -->
```python
application = None
```
<!-- wsgateway-install: urls -->
```python
urlpatterns = []
```
<!-- wsgateway-install: view -->
```python
def page(request): ...
```
<!-- wsgateway-install: template site/page.html -->
```django
{% load wsgateway %}
```
<!-- wsgateway-install: run -->
```sh
python manage.py runserver
```
<!-- wsgateway-install: serve -->
```sh
daphne -p 8000 mysite.asgi:application
uvicorn --port 8000 mysite.asgi:application  # the uvicorn extra
```
"""


def test_markers_give_code_and_paths() -> None:
    steps = install_steps(MARKED)
    assert steps["settings"] == Step("settings", "mysite/settings.py", "WSGATEWAY = {}\n", 7)
    assert steps["template"].path == "site/page.html"
    assert pip_extras(steps["pip"]) == ["daphne"]
    assert serve_commands(steps)["uvicorn"] == ["uvicorn", "--port", "{port}", "mysite.asgi:application"]


@pytest.mark.parametrize(
    ("target", "a_name"),
    [
        ("wsgateway", True),
        ("wsgateway-fork", True),
        ("./wsgateway", False),
        ("../checkouts/wsgateway", False),
        ("/src/wsgateway", False),
        ("dist/wsgateway-0.2.0-py3-none-any.whl", False),
    ],
)
def test_a_pip_install_that_asks_the_index_for_a_name_is_caught(target: str, a_name: bool) -> None:
    step = Step("pip", None, f'pip install "{target}[daphne]"\n', 1)
    assert pip_target_is_a_name(step) is a_name


def test_a_missing_marker_is_named() -> None:
    with pytest.raises(ReadmeStepError, match=r"no <!-- wsgateway-install: view --> \(the views"):
        install_steps(MARKED.replace("<!-- wsgateway-install: view -->\n", ""))


def test_a_marker_without_its_code_block_is_named() -> None:
    broken = MARKED.replace("<!-- wsgateway-install: urls -->\n", "<!-- wsgateway-install: urls -->\n\n")
    with pytest.raises(
        ReadmeStepError, match=r"line 15: <!-- wsgateway-install: urls --> is not followed by"
    ):
        install_steps(broken)


def test_a_repeated_or_unknown_marker_is_named() -> None:
    with pytest.raises(ReadmeStepError, match=r"line 1: unknown marker 'setings'"):
        install_steps("<!-- wsgateway-install: setings -->\n```python\nX = 1\n```\n" + MARKED)
    with pytest.raises(ReadmeStepError, match=r"wsgateway-install: pip --> again \(first on line 3\)"):
        install_steps(MARKED + '<!-- wsgateway-install: pip -->\n```sh\npip install "x[daphne]"\n```\n')


# -- the installation ----------------------------------------------------------------------------


def index_unreachable() -> str | None:
    """Why pip cannot reach its package index (the one it is told to use, else PyPI), or None."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/daphne/", timeout=10):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: pip will say what is wrong
    except OSError as exc:  # URLError, a timeout, a refused connection
        return f"the package index {index} cannot be reached ({exc})"


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run one step; fail with its command and output."""
    try:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        # A timeout's output is bytes even under text=True.
        output = "\n".join(
            part.decode(errors="replace") if isinstance(part, bytes) else str(part or "")
            for part in (exc.stdout, exc.stderr)
        )
        raise AssertionError(f"{' '.join(command)} took over {timeout}s:\n{output}") from None
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def run_commands(step: Step) -> list[str]:
    """The ``manage.py`` commands of a shell step, in order, without their arguments."""
    return [
        line.split("#")[0].split()[2]
        for line in step.code.splitlines()
        if line.strip().startswith("python manage.py ")
    ]


@dataclass
class Site:
    http_url: str
    ws_url: str
    steps: dict[str, Step]


@dataclass
class Project:
    """The project made by the README's steps, its virtualenv and its environment."""

    path: Path
    bin_dir: Path
    env: dict[str, str]
    steps: dict[str, Step]


def apply_steps(steps: dict[str, Step], site: Path) -> None:
    """The README's snippets, each where its marker says: settings appended, the rest written whole."""
    for step in steps.values():
        if step.name in ("pip", "run", "serve"):  # commands, run by the fixtures
            continue
        assert step.path is not None
        target = site / step.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if step.name == "settings":
            with target.open("a") as settings:
                settings.write("\n\n" + step.code)
        else:
            target.write_text(step.code)


#: The servers the site is served with: the README's runserver, and the two it starts on their own.
SERVERS = ["runserver", "daphne", "uvicorn"]


def serve_commands(steps: dict[str, Step]) -> dict[str, list[str]]:
    """Each server's command line from the README, ``{port}`` where its port is: runserver's from the
    "run" step (without its reloader, which would outlive the test), daphne's and uvicorn's from "serve"."""
    commands = {"runserver": ["python", "manage.py", "runserver", f"{HOST}:{{port}}", "--noreload"]}
    assert "python manage.py runserver" in steps["run"].code, steps["run"].code
    for line in steps["serve"].code.splitlines():
        words = line.split("#")[0].split()
        if words:
            commands[words[0]] = [re.sub(r"^8000$", "{port}", word) for word in words]
    assert sorted(commands) == sorted(SERVERS), commands
    assert all(any("{port}" in word for word in command) for command in commands.values()), commands
    return commands


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    steps = install_steps(README.read_text())  # a missing marker fails here, before any download
    reason = index_unreachable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("wheel-install")
    times: dict[str, float] = {}
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        times[name], started = round(time.monotonic() - started, 1), time.monotonic()

    # The README installs from a checkout, of which pip builds a wheel; this builds the sdist, then the
    # wheel from it, as pip builds one from an sdist: the same wheel, and a check that the sdist is whole.
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}}
    # One build at a time: setuptools writes its egg-info into the checkout, and two pytest workers
    # that each took some of this module's tests (``-n 2`` without ``--dist loadfile``) built over
    # each other.
    with open(tmp_path_factory.getbasetemp().parent / "wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = [sys.executable, "-m", "build", "--quiet", "--outdir", str(work / "dist"), str(ROOT)]
        run(build, work, env, 180)
    (wheel,) = (work / "dist").glob("wsgateway-*.whl")
    lap("build")

    run([sys.executable, "-m", "venv", str(work / "venv")], work, env, 120)
    bin_dir = work / "venv" / "bin"
    env.pop("VIRTUAL_ENV", None)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    # The README's extras, and uvicorn's, which it names for uvicorn's command.
    extras = ",".join([*pip_extras(steps["pip"]), "uvicorn"])
    # pip's own cache (the user's) makes a rerun fast; nothing here turns it off.
    pip = [str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "install", "--progress-bar", "off", f"{wheel}[{extras}]"], work, env, 360)
    lap("venv and pip install")

    run([str(bin_dir / "django-admin"), "startproject", "mysite"], work, env, 60)
    path = work / "mysite"
    apply_steps(steps, path)
    manage = [str(bin_dir / "python"), "manage.py"]
    checked = run([*manage, "check"], path, env, 60)
    assert "System check identified no issues" in checked, checked
    run([*manage, "migrate", "--noinput"], path, env, 120)
    # The README's "Run it", command by command (createsuperuser without its prompts).
    commands = run_commands(steps["run"])
    assert commands == ["migrate", "createsuperuser", "runserver"], commands
    user = ["--username", USERNAME, "--email", f"{USERNAME}@example.com"]
    run(
        [*manage, "createsuperuser", "--noinput", *user],
        path,
        dict(env, DJANGO_SUPERUSER_PASSWORD=PASSWORD),
        60,
    )
    lap("startproject, check, migrate, createsuperuser")
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "wheel-install-times.txt").write_text("".join(f"{k}: {v}s\n" for k, v in times.items()))
    return Project(path, bin_dir, env, steps)


@pytest.fixture(scope="module", params=SERVERS)
def site(request: pytest.FixtureRequest, project: Project) -> Iterator[Site]:
    """The project served by one server, as the README runs it."""
    port = free_port()
    command = [word.format(port=port) for word in serve_commands(project.steps)[request.param]]
    command[0] = str(project.bin_dir / command[0])  # python, daphne, uvicorn: the virtualenv's
    log_path = OUTPUT / f"wheel-install-{request.param}-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=project.path, env=project.env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, proc=server)
        yield Site(f"http://{HOST}:{port}", f"ws://{HOST}:{port}", project.steps)
    finally:
        alive = server.poll() is None
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    assert alive, f"{request.param} died during the test; see {log_path}"
    assert "Traceback" not in log_path.read_text(errors="replace"), (
        f"{request.param} logged an exception; see {log_path}"
    )


def notifying_url(steps: dict[str, Step]) -> str:
    """The URL of the README's view that calls notify(): its function in the views step, and the
    ``path()`` of the urls step that routes to it."""
    body_then_notify = r"^def (\w+)\(request[^)]*\):\n(?:(?:    .*)?\n)*?    notify\("
    view = re.search(body_then_notify, steps["view"].code, re.M)
    assert view, f"no view that calls notify() in the README's views:\n{steps['view'].code}"
    route = re.search(rf'path\("([^"]*)",\s*views\.{view[1]}\b', steps["urls"].code)
    assert route, f"no path() to views.{view[1]} in the README's urls:\n{steps['urls'].code}"
    return "/" + route[1]


def admin_login(site: Site) -> HttpSession:
    """Log in where the README's views send an anonymous user: the admin's login page."""
    session = HttpSession(site.http_url)
    assert "csrfmiddlewaretoken" in session.get("/admin/login/")
    status, _ = session.post(
        "/admin/login/?next=/", {"username": USERNAME, "password": PASSWORD, "next": "/"}
    )
    assert status == 200 and session.cookie("sessionid"), f"login failed ({status})"
    return session


@pytest.mark.packaging
@pytest.mark.daphne
@pytest.mark.timeout(600)  # cold: the downloads; warm, about a minute
async def test_the_readme_view_notifies_the_logged_in_users_socket(site: Site) -> None:
    session = await asyncio.to_thread(admin_login, site)
    page = await asyncio.to_thread(session.get, "/")
    assert "<wsgateway-inbox" in page, page
    # The tag's files, served by each server, not only by runserver (a 404 here was a page without a bell,
    # and "WSGateway is not defined" in its console).
    for path, marker in INBOX_FILES.items():
        assert path in page, (path, page)
        served = await asyncio.to_thread(session.get, path)
        assert marker in served, (path, served[:200])

    async with await ws_connect(
        f"{site.ws_url}/ws/", cookie=session.cookie_header, origin=site.http_url
    ) as ws:
        frames = await connect_frames(ws)
        assert frames["gateway"]["user"]["username"] == USERNAME
        unread = frames["notifications"]["unread"]

        status, body = await asyncio.to_thread(session.post, notifying_url(site.steps))
        assert 200 <= status < 300, (status, body)

        try:
            frame = await recv_json(ws, within=10)
        except TimeoutError:
            pytest.fail("the README's view answered, but no notification reached the socket within 10 s")
        assert frame["channel"] == "notifications", frame
        assert frame["payload"]["unread"] == unread + 1
        last = frame["payload"]["last"]
        assert f'"{last["label"]}"' in site.steps["view"].code, (last, site.steps["view"].code)


@pytest.mark.packaging
@pytest.mark.daphne
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_the_readme_page_in_chromium_shows_the_bell_a_toast_and_the_inbox_in_every_tab(site: Site) -> None:
    """The template's one tag as a browser runs it, in two tabs: the button's notification counts on both
    badges and is toasted in both, without a reload; the bell's inbox lists it; marking it read in one tab
    takes the count down and the toast away in both."""
    executable = chromium_executable()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import expect, sync_playwright

    label = re.search(r'notify\(request\.user, "([^"]+)"', site.steps["view"].code)
    assert label, f"the README's view sends no literal label:\n{site.steps['view'].code}"
    session = admin_login(site)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(10_000)
            context.add_cookies(
                [{"name": c.name, "value": c.value or "", "url": site.http_url} for c in session.jar]
            )
            errors: list[str] = []
            tabs = [context.new_page(), context.new_page()]
            for tab in tabs:
                tab.on("pageerror", lambda error: errors.append(str(error)))
                tab.goto(site.http_url + "/")
                # The element's own socket (the page makes none) has had the server's hello.
                tab.locator("wsgateway-inbox[data-state=open]").wait_for()
            acting = tabs[0]
            # The same user's earlier tests left notifications unread: count from the connect frame's
            # badge count, once the element's socket has had it, and the badge must show it.
            before = badge_count(acting)
            for tab in tabs:
                expect(tab.locator("wsgateway-inbox .wsgi-badge")).to_have_text(str(before))
            # A reload would lose this; the button's 204 must leave the page where it is.
            acting.evaluate("window.beforeTheButton = true")

            acting.get_by_role("button", name="Send me a notification").click()
            for tab in tabs:
                expect(tab.locator("wsgateway-inbox .wsgi-badge")).to_have_text(str(before + 1))
                expect(tab.locator("wsgateway-inbox .wsgi-toast", has_text=label[1])).to_have_count(1)
            assert acting.evaluate("window.beforeTheButton") is True, "the button reloaded the page"

            acting.locator("wsgateway-inbox .wsgi-bell").click()
            newest = acting.locator("wsgateway-inbox .wsgi-item").first
            expect(newest.locator(".wsgi-label")).to_have_text(label[1])
            newest.locator("button[data-action=mark_read]").click()
            for tab in tabs:
                expect(tab.locator("wsgateway-inbox .wsgi-badge")).to_have_text(str(before))
                expect(tab.locator("wsgateway-inbox .wsgi-toast")).to_have_count(0)
            assert errors == [], errors
        finally:
            browser.close()


def badge_count(tab: Any) -> int:
    """What the server says the badge counts (``counts.badge`` of the notifications connect frame), read
    from the element's own ``WSGateway`` once that frame has come."""
    counted = "document.querySelector('wsgateway-inbox').gateway?.notifications.counts?.badge"
    tab.wait_for_function(f"typeof {counted} === 'number'")
    return int(tab.evaluate(counted))
