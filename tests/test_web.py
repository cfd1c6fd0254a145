"""The web page in headless Chromium: identify a photo, see the match and its outline, browse, add, camera.

Needs the ``playwright`` Python package and Debian's ``chromium`` (never a downloaded browser);
without either the tests skip with the reason. Set COVER_ID_SCREENSHOT_DIR to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_serve import build_world, cover_jpeg, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a fake camera (a moving test pattern) and no permission prompt, for the webcam path
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
KEY = "web-key"


def _keep(shot: Path) -> None:
    keep = os.environ.get("COVER_ID_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: the playwright package is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[SimpleNamespace]:
    world = build_world(tmp_path_factory.mktemp("web"))
    s = serve(world["index"], {"workers": 2, "api_key": KEY})
    s.world = world
    yield s
    s.client.close()
    s.server.stop()


def _upload_and_wait(page, photo: Path) -> None:
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('decision').textContent.length > 0", timeout=60_000)
    page.wait_for_function(
        "document.getElementById('ref-image').complete && document.getElementById('ref-image').naturalWidth > 0"
    )


def _points(page, selector: str) -> list[list[float]]:
    raw = page.get_attribute(selector, "points")
    return [[float(v) for v in p.split(",")] for p in raw.split()]


def test_identify_a_photo_shows_match_and_outline(browser, site: SimpleNamespace, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url)
    page.wait_for_function("document.getElementById('status').textContent.includes('references')")
    _upload_and_wait(page, site.world["photo_path"])

    assert page.text_content("#decision") == "accept"
    assert page.text_content("#match-name") == "Film number 2"
    assert "inliers" in page.text_content("#scores")
    assert "/api/refs/cover-002/image" in page.get_attribute("#ref-image", "src")
    assert page.text_content("#fields").count("horror") == 1  # catalog fields shown
    assert page.locator("#alternatives li img").count() >= 1  # alternatives with thumbnails

    # the outline drawn over the photo sits on the cover (SVG coordinates are photo pixels)
    assert page.get_attribute("#overlay", "viewBox") == "0 0 960 720"
    truth = site.world["corners"]
    outline = _points(page, "#overlay polygon.match")
    assert len(outline) == 4
    assert max(min(abs(x - tx) + abs(y - ty) for tx, ty in truth) for x, y in outline) < 25
    if page.locator("#overlay polygon.quad").count():
        assert len(_points(page, "#overlay polygon.quad")) == 4
    box_img = page.locator("#photo").bounding_box()
    box_svg = page.locator("#overlay").bounding_box()
    assert abs(box_img["width"] - box_svg["width"]) < 2 and abs(box_img["height"] - box_svg["height"]) < 2

    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    _keep(shot)
    assert not errors, errors
    page.close()


def test_phone_sized_screen(browser, site: SimpleNamespace, tmp_path: Path) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    page = context.new_page()
    page.goto(site.url)
    _upload_and_wait(page, site.world["photo_path"])
    assert page.text_content("#decision") == "accept"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page is {overflow}px wider than the phone screen"
    photo = page.locator("#photo").bounding_box()
    ref = page.locator("#ref-image").bounding_box()
    assert ref["y"] >= photo["y"] + photo["height"] - 1  # stacked, not squeezed side by side
    shot = tmp_path / "screenshot_phone.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    context.close()


def test_browse_search_and_add_a_reference(browser, site: SimpleNamespace, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(site.url)
    page.click("#tab-collection")
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 8")
    page.wait_for_function("document.getElementById('stats').textContent.includes('8 references')")
    assert "genre: 3 values" in page.text_content("#stats")
    page.fill("#q", "horror")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 2")
    page.click("#grid .card >> nth=0")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.text_content("#detail-name").startswith("Film number")
    page.click("#detail-close")

    new_cover = tmp_path / "midnight_harbour.jpg"
    new_cover.write_bytes(cover_jpeg(77))
    page.click("#tab-add")
    page.set_input_files("#add-file", str(new_cover))
    page.fill("#add-meta", "year: 2021\ngenre: noir")
    page.fill("#api-key", KEY)
    page.click("#add-submit")
    page.wait_for_function("document.getElementById('add-result').textContent.includes('Added')")
    rec = site.client.get("/api/refs/midnight-harbour").json()
    assert rec["name"] == "Midnight Harbour" and rec["year"] == 2021 and rec["genre"] == "noir"

    page.click("#tab-collection")
    page.fill("#q", "noir")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 1")
    assert page.text_content("#grid .card .name") == "Midnight Harbour"
    assert site.client.delete("/api/refs/midnight-harbour", headers={"X-API-Key": KEY}).status_code == 200
    page.close()


def test_camera_capture_and_live_mode(browser, site: SimpleNamespace) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 800}, permissions=["camera"])
    page = context.new_page()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/api/identify") else None)
    page.goto(site.url)
    page.click("#cam-start")
    page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=20_000)
    page.click("#cam-capture")
    page.wait_for_function("document.getElementById('decision').textContent.length > 0", timeout=60_000)
    assert page.text_content("#decision") in ("accept", "review", "reject")  # a test pattern: any answer, no error
    assert page.is_hidden("#message") or "rror" not in page.text_content("#message")
    before = len(sent)
    page.check("#live")
    deadline = time.monotonic() + 20
    while len(sent) < before + 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert len(sent) >= before + 2, "live mode did not send a frame about every second"
    page.click("#cam-stop")
    page.wait_for_timeout(1500)
    after_stop = len(sent)
    page.wait_for_timeout(1500)
    assert len(sent) == after_stop  # stopping the camera stops live mode
    context.close()
