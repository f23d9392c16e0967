"""The analysis pages in a real browser: Debian's Chromium driven by Playwright, against the
gateway served on the loopback, the real job runner and the real Triton of tests/conftest.py.

Sign up, upload through the form, watch the stage and percentage change without a reload, see the
timeline, click a window and find the player at its start, delete. Screenshots of the upload,
progress and result pages (laptop and phone sizes) go to ``$EMOFUSE_SCREENSHOTS`` when it is set,
else to the test's temporary folder. Skipped, saying why, without the ``playwright`` package or
``/usr/bin/chromium`` (Debian's ``chromium``; Playwright's own browser download cannot work here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from gateway import create_app
from gateway.config import Config
from gateway.testing import free_port
from gateway.testing_flow import PASSWORD, owned_counts, stored_files
from preprocessing.synthesis import SampleSpec, write_sample_video

CHROMIUM = "/usr/bin/chromium"
LAPTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: `apt-get install -y chromium` (Debian) provides it.")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")}))
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("EMOFUSE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_upload_follow_the_progress_seek_a_window_and_delete(browser: Any, served: tuple[str, Any], triton: Any, tmp_path: Path,
                                                             shots: Path) -> None:  # fmt: skip
    base, app = served
    # 9 windows: two requests (8 + 1) and a copy of 972 frames, so the stages last long enough for
    # the page's once-a-second polls to see the bar move even on a busy machine.
    video = write_sample_video(tmp_path / "Interview.mp4", SampleSpec(duration_s=32.4, width=640, height=360, face_height=200))
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{base}/auth/sign-up")
    page.fill("#email", "browser@example.org")
    page.fill("#password", PASSWORD)
    page.fill("#confirmation", PASSWORD)
    page.click("text=Create account >> nth=-1")
    page.wait_for_url(f"{base}/")

    page.click("text=New analysis >> nth=0")
    page.set_input_files("#recording", str(video))
    page.check("input[name=consent]")
    page.screenshot(path=str(shots / "upload.png"), full_page=True)
    page.click("text=Upload and analyse")
    page.wait_for_url(f"{base}/analyses/*")
    assert page.inner_text("[data-stage]") == "Waiting for a worker"
    page.evaluate("window.emofuseLoaded = true")  # gone if the page reloads
    page.screenshot(path=str(shots / "progress.png"), full_page=True)

    # `emofuse worker` in a process of its own, as deployed: in this one it would hold the GIL
    # that the server's threads need to answer the page's polls.
    env = {**os.environ, "EMOFUSE_DATA_DIR": str(tmp_path / "data"), "EMOFUSE_JOB_POLL_S": "0.2"}
    worker = subprocess.Popen([sys.executable, "-m", "emofuse.cli", "worker", "--burst", "--triton", triton.grpc_url],
                              cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        seen = _watch(page, worker)
        assert worker.wait(timeout=120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    page.wait_for_selector("#player", timeout=30_000)
    page.wait_for_selector("#progress", state="hidden", timeout=30_000)
    assert page.evaluate("window.emofuseLoaded") is True, "the page reloaded"
    assert any(0 < percent < 100 for percent, _ in seen), seen  # the bar moved on the way
    assert len({stage for _, stage in seen}) >= 2, seen  # and the stage changed, without a reload

    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=30_000)
    windows = page.locator("button.window")
    assert windows.count() == 9
    windows.nth(2).click()
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 7.2) < 0.05", timeout=10_000)
    page.locator("svg.strip rect[data-seek]").nth(1).click()
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 3.6) < 0.05", timeout=10_000)
    assert page.locator("svg.plot polyline").count() >= 5
    page.screenshot(path=str(shots / "result.png"), full_page=True)
    phone = context.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(page.url)
    phone.screenshot(path=str(shots / "result-phone.png"), full_page=True)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the phone page is {width} px wide: it scrolls sideways"

    with page.expect_download() as download:
        page.click("text=Annotated video (MP4)")
    copy = tmp_path / "copy.mp4"
    download.value.save_as(copy)
    import av

    with av.open(str(copy)) as container:
        assert container.streams.video[0].frames > 0 or container.duration

    page.on("dialog", lambda dialog: dialog.accept())  # the delete button asks first
    page.click("button.danger-text")
    page.wait_for_url(f"{base}/")
    assert "its files are deleted" in page.inner_text("main")
    user = app.extensions["emofuse.storage"].root.iterdir()
    user_id = int(next(user).name)
    assert owned_counts(app, user_id)["Analysis"] == 0 and stored_files(app, user_id) == []
    context.close()
    if not os.environ.get("EMOFUSE_SCREENSHOTS"):
        shutil.copytree(shots, tmp_path / "kept", dirs_exist_ok=True)


def _watch(page: Any, worker: subprocess.Popen[bytes]) -> list[tuple[int, str]]:
    """(percent, stage) as the page shows them, every 50 ms while the job runs and a little after."""
    seen, until = [], None
    while until is None or time.monotonic() < until:
        if until is None and worker.poll() is not None:
            until = time.monotonic() + 3  # the page polls once a second: let it catch up
        try:
            percent = int(page.inner_text("[data-percent]", timeout=500).split()[0])
            seen.append((percent, page.inner_text("[data-stage]", timeout=500)))
        except Exception:  # the bar is hidden once the analysis is done
            if until is not None:
                break
        time.sleep(0.05)
    return seen
