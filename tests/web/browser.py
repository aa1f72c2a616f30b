"""Helpers of the browser test: headless Chromium through Selenium, and `manage.py runstack` as a
subprocess (daphne + a Celery worker) on a given port, database and Redis.

Chromium and its driver come from the system (Debian: `apt-get install chromium chromium-driver`);
their paths are always given explicitly, so Selenium Manager never tries to download a browser.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from lfl_web.stack.supervisor import kill_group

from .polling import wait_until

REPO = Path(__file__).resolve().parents[2]

INSTALL_HINT = (
    "The browser test needs Chromium and its WebDriver. On Debian/Ubuntu install them with\n"
    "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver\n"
    "(.ci/run does this on CI), or point LFL_CHROMIUM and LFL_CHROMEDRIVER at the binaries."
)

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1000",
)


def find_binary(variable: str, default: str, *names: str) -> str | None:
    """$variable if set (None if it names no file), else `default` if it exists, else the first of
    `names` on PATH."""
    if os.environ.get(variable):
        return os.environ[variable] if Path(os.environ[variable]).is_file() else None
    if Path(default).exists():
        return default
    return next((found for found in map(shutil.which, names) if found), None)


def missing_browser() -> str | None:
    """What is missing and how to install it, or None when Chromium and its driver are there."""
    try:
        chromium_paths()
    except AssertionError as missing:
        return str(missing)
    return None


def chromium_paths() -> tuple[str, str]:
    """(browser, driver); AssertionError with the install instructions when either is missing."""
    browser = find_binary("LFL_CHROMIUM", "/usr/bin/chromium", "chromium", "chromium-browser")
    driver = find_binary("LFL_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        raise AssertionError(f"{' and '.join(missing)} not found.\n{INSTALL_HINT}")
    return browser, driver


@contextlib.contextmanager
def headless_chromium(download_dir: Path):
    """A Selenium Chrome driver on a fresh profile; browser and profile are gone after the block."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    profile = tempfile.mkdtemp(prefix="lfl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir), "download.prompt_for_download": False,
    })
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(90)
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_log(driver) -> str:
    """The browser console so far (for failure reports)."""
    with contextlib.suppress(Exception):
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    return "(no console log)"


def full_page_screenshot(driver, path: Path) -> Path:
    """A PNG of the whole page (not just the window), from the top, through the DevTools protocol."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


class Stack:
    """`python manage.py runstack` on `port`, logging to `log_path`; stop() ends it and its children."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runstack", "--port", str(port)], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_until_serving(self, timeout: float) -> None:
        wait_until(lambda: self.process.poll() is not None or self.serving(), timeout=timeout, interval=0.2)
        if self.process.poll() is not None or not self.serving():
            state = "exited" if self.process.poll() is not None else "still starting"
            raise AssertionError(f"runstack is not serving {self.url} after {timeout:g} s ({state})\n{self.log()}")

    def child_pids(self) -> list[int]:
        """The pids of "started NAME (pid N)" lines (daphne, the worker), and of "restarted NAME (pid N)"
        lines (a part that died and was started again)."""
        return [int(line.split("(pid ")[1].split(")")[0])
                for line in self.log_path.read_text(errors="replace").splitlines()
                if line.startswith(("started ", "restarted ")) and "(pid " in line]

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (runstack stops its children in order); then SIGKILL whatever is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        kill_group(self.process.pid)
        self.process.wait()
        for pid in self.child_pids():  # each child runs in its own process group
            kill_group(pid)
