"""JupyterLab in a real browser: open the quickstart, run all cells, use the app with the mouse.

The app's controls must reach the run: the batch-size slider set to 4 in the page gives the
Compare's after side batch size 4.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token, a temporary copy of
``notebooks/``, its own config, settings and kernelspec folders so nothing of the machine's
Jupyter setup leaks in) and drives Debian's Chromium headless through Playwright's Python
package (no Playwright browser download). Saves ``tests/artifacts/jupyterlab_app.png`` and
``tests/artifacts/app_compare.png``; with ``WHISPERKIT_README_SCREENSHOT=1`` in the environment
the second one is written to ``docs/app.png``, the README's screenshot, instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
README_SCREENSHOT = (ROOT / "docs" / "app.png" if os.environ.get("WHISPERKIT_README_SCREENSHOT") == "1"
                     else ARTIFACTS / "app_compare.png")
MAX_README_SCREENSHOT_BYTES = 300_000
CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SERVER_START_TIMEOUT_S = 90
RUN_ALL_TIMEOUT_S = int(os.environ.get("WK_RUN_ALL_TIMEOUT_S", 150))
JOB_TIMEOUT_S = 90

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: /usr/bin/chromium (apt-get install chromium) "
                                                        "is needed for the browser test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jupyter_home(base: Path) -> dict:
    """Config, settings, workspaces, runtime and a ``python3`` kernelspec of this interpreter under ``base``."""
    config = base / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "jupyter_lab_config.py").write_text(
        "c.LabApp.news_url = None\n"
        "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
        "c.LabApp.extension_manager = 'readonly'\n"
    )
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    settings = base / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    # render every cell (no windowing), so the app's output exists in the page while not scrolled to
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    kernel = base / "share" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
    }))
    return {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_PATH": str(base / "share"),
    }


@pytest.fixture
def jupyterlab(tmp_path):
    """A running JupyterLab serving a copy of notebooks/: yields (base url, token)."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **jupyter_home(tmp_path / "jupyter"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {SERVER_START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield base, token
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and its kernels
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
        log.close()


def test_quickstart_app_in_jupyterlab(jupyterlab):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{base}/lab/tree/01_quickstart.ipynb?token={token}", timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # the kernel must be up before Run All, or the run waits on a kernel dialog
            page.wait_for_selector(".jp-Notebook", state="visible")
            wait_for_idle_kernel(page)
            file_browser_tab = page.locator(".jp-SideBar.jp-mod-left li[data-id='filebrowser']")
            if file_browser_tab.count():  # fold the file browser away: more room for the notebook
                file_browser_tab.click()

            cells = page.locator(".jp-Notebook .jp-CodeCell")
            run_all_cells(page, cells.first)
            app_cell = cells.last
            transcribe = app_cell.locator("button.widget-button", has_text="Transcribe")
            transcribe.wait_for(state="visible", timeout=RUN_ALL_TIMEOUT_S * 1000)
            # the cells above ran: the transcript and the timeline (a plotly chart) are in the page
            printed = page.locator(".jp-OutputArea-output", has_text="Four score and seven years ago")
            assert printed.count() >= 1
            assert page.locator(".jp-Notebook svg.main-svg").count() >= 1
            assert app_cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
            app = app_cell.locator(".jp-OutputArea-output").last
            app.scroll_into_view_if_needed()
            live_charts = app.locator("svg.main-svg").count()
            assert live_charts >= 1, "the app's live utilization chart did not render"

            transcribe.click()
            app.get_by_text("Four score and seven years ago").first.wait_for(timeout=JOB_TIMEOUT_S * 1000)
            app.get_by_text("Done in").first.wait_for(timeout=JOB_TIMEOUT_S * 1000)
            page.wait_for_function(
                "([el, n]) => el.querySelectorAll('svg.main-svg').length > n",
                arg=[app.element_handle(), live_charts], timeout=30_000,
            )
            assert app.locator("table", has_text="RTFx").count() >= 1
            assert not app.get_by_text("Error:").count()
            live = app.locator(".js-plotly-plot").first
            assert live.locator("g.trace.scatter").count() >= 2, "no CPU lines in the live chart"
            app.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "jupyterlab_app.png"))

            # the controls reach the run: batch size 4 typed into the slider's readout, quick mode ticked
            set_slider(page, app.locator(".widget-hslider", has_text="Batch size"), 4)
            app.locator(".widget-checkbox", has_text="quick: one run each").locator("input").check()
            app.get_by_text("Compare: sequential with num_workers=24 against batched at batch size 4").first.wait_for(
                timeout=10_000)
            app.locator("button.widget-button", has_text="Compare before/after").click()
            app.get_by_text("Speed-up").first.wait_for(timeout=JOB_TIMEOUT_S * 1000)
            app.get_by_text("Done in").first.wait_for(timeout=JOB_TIMEOUT_S * 1000)
            assert app.get_by_text("before: sequential, num_workers=24").count() >= 1
            # the after side ran at the slider's batch size: its label and its batch-size row say 4
            assert app.get_by_text("after: batched, batch_size=4").count() >= 1
            assert app.get_by_text("quick mode, noise not measured").count() >= 1
            assert not app.get_by_text("Error:").count()
            page.wait_for_timeout(1500)  # let plotly finish laying out the new figures
            readme_shot(page, app)
            assert not [e for e in page_errors if "plotly" in e.lower() or "widget" in e.lower()], page_errors
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab_failure.png"))  # what the browser showed
            raise
        finally:
            browser.close()
    size = README_SCREENSHOT.stat().st_size
    assert 10_000 < size < MAX_README_SCREENSHOT_BYTES, f"{README_SCREENSHOT} is {size} bytes"


def set_slider(page, slider, value: int) -> None:
    """Type ``value`` into an ipywidgets slider's editable readout, as a user would, and check it took."""
    readout = slider.locator(".widget-readout")  # contenteditable: Enter (or leaving it) sets the value
    readout.click(click_count=3)  # select its text (Ctrl+A would reach JupyterLab's shortcuts)
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")
    page.wait_for_function("([el, v]) => el.textContent.trim() === v", arg=[readout.element_handle(), str(value)],
                           timeout=10_000)


def wait_for_idle_kernel(page) -> None:
    """Wait until the notebook's kernel is connected and idle, as the status bar says it."""
    page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(timeout=60_000)


def run_all_cells(page, first_cell, attempts: int = 2) -> None:
    """Run > Run All Cells from the menu bar; check the first cell started, else try once more.

    Just after a page load JupyterLab can report the kernel idle while its session is still
    being wired up, and a Run All then does nothing; a user would click again, and so do we.
    """
    prompt = first_cell.locator(".jp-InputArea-prompt")
    for attempt in range(attempts):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.textContent)", arg=prompt.element_handle(),
                                   timeout=15_000)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


def readme_shot(page, app) -> None:
    """The app from its title down, as far as a 1280 x 1400 window shows it, at 1x scale, as a PNG."""
    page.set_viewport_size({"width": 1280, "height": 1400})
    app.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    box = app.bounding_box()
    panel = page.locator(".jp-NotebookPanel-notebook").first.bounding_box()  # where the notebook scrolls
    clip = {"x": box["x"], "y": box["y"], "width": min(box["width"], panel["x"] + panel["width"] - box["x"]),
            "height": min(box["height"], panel["y"] + panel["height"] - box["y"])}
    page.screenshot(path=str(README_SCREENSHOT), clip=clip, scale="css")
