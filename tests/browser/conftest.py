"""Browser tests of the studio page: a real headless Chromium (Debian's `chromium` and `chromedriver`) driven by
Selenium against `aurl serve`'s app, run by uvicorn in a background thread of the test session.

Without the browser the whole folder is skipped, and the end of the run says so and how to install it."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOW = "install them with `apt-get install chromium chromium-driver`, then run `make test`"
TOKEN = "s3cret-studio-token"

try:
    import selenium  # noqa: F401

    _SELENIUM = True
except ImportError:  # the dev extra is not installed
    _SELENIUM = False

_missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()] + ([] if _SELENIUM else ["selenium"])
MISSING = f"browser tests skipped: {', '.join(_missing)} missing; {HOW}" if _missing else ""
_skipped_here: list[str] = []


def pytest_collection_modifyitems(config, items):
    if not MISSING:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=MISSING)
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)
            _skipped_here.append(item.nodeid)


def pytest_terminal_summary(terminalreporter):
    """A skipped browser suite is said out loud, not hidden in the skip count."""
    if _skipped_here:
        terminalreporter.write_sep("!", f"{len(_skipped_here)} {MISSING}", yellow=True, bold=True)


class LiveServer:
    """The studio app served by uvicorn on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def studio(trained_run, mmm_run, tmp_path_factory):
    """The studio serving the tiny REMI run and the tiny multitrack run, without a token."""
    from aurl.serve.app import create_app

    server = LiveServer(create_app([trained_run, mmm_run], work_dir=tmp_path_factory.mktemp("studio")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def studio_with_token(trained_run, tmp_path_factory):
    """A studio that asks for a token, as `aurl serve --token` runs it."""
    from aurl.serve.app import create_app

    server = LiveServer(create_app([trained_run], token=TOKEN, work_dir=tmp_path_factory.mktemp("studio-token")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session; each test loads the page afresh."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="aurl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Without the background-networking flags Chromium's connections are refused on a closed network
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    """The browser, with the page's JavaScript errors checked after the test (failed requests that a test
    provokes on purpose, 4xx answers, are the API's business and not counted)."""
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    errors = [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
    assert not errors, f"JavaScript errors on the page: {errors}"
