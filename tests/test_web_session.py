"""The web page's scan session in headless Chromium: identify two photos, correct one, export the session;
live-camera fusion (steady items, no flicker, added once) with a fake camera that films a cover."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_serve import build_world, scene_jpeg, serve
from tests.test_web import ARGS, CHROMIUM, _keep, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("websession")
    world = build_world(root)
    prices = root / "prices.json"
    prices.write_text(
        json.dumps({"cover-002": {"value": 4.5, "currency": "EUR"}, "cover-005": {"value": 10, "currency": "EUR"}})
    )
    s = serve(world["index"], {"workers": 2, "prices": str(prices)})
    s.world = world
    yield s
    s.client.close()
    s.server.stop()


def _identify(page, photo: Path, n_items: int) -> None:
    page.set_input_files("#file", str(photo))
    page.wait_for_function(f"document.querySelectorAll('#session-items li').length === {n_items}", timeout=60_000)


def test_identify_two_photos_correct_one_and_export(browser, site: SimpleNamespace, tmp_path: Path) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url)
    page.wait_for_function("document.getElementById('status').textContent.includes('references')")
    page.click("#session-new")
    page.wait_for_function("document.getElementById('session-select').value.length > 0")
    sid = page.input_value("#session-select")

    p2, p5 = tmp_path / "shelf_a.jpg", tmp_path / "shelf_b.jpg"
    p2.write_bytes(site.world["photo"])
    p5.write_bytes(scene_jpeg(5, 31)[0])
    _identify(page, p2, 1)
    assert page.text_content("#decision") == "accept" and page.text_content("#match-name") == "Film number 2"
    assert page.text_content("#match-price") == "4.50 EUR"
    # "yes, that's it": the confirmed photo becomes an extra view of the item
    page.click("#fb-confirm")
    page.wait_for_function("document.getElementById('fb-status').textContent.startsWith('Thanks')")
    assert "extra view" in page.text_content("#fb-status")
    assert site.client.get("/api/refs/cover-002--feedback-1").json()["item"] == "cover-002"
    _identify(page, p5, 2)
    assert page.text_content("#match-name") == "Film number 5"
    page.wait_for_function("document.getElementById('session-total').textContent.includes('14.50 EUR')")

    # "no, it's this one": the second photo is corrected to an alternative
    page.wait_for_selector("#alternatives .fb-pick")
    alt = page.get_attribute("#alternatives .fb-pick >> nth=0", "data-id")
    page.click("#alternatives .fb-pick >> nth=0")
    page.wait_for_function("document.getElementById('fb-status').textContent.startsWith('Corrected')")
    page.wait_for_function(f"document.querySelector('#session-items li[data-ref=\"{alt}\"]') !== null")
    assert "corrected (was Film number 5)" in page.text_content(f"#session-items li[data-ref='{alt}']")

    with page.expect_download() as dl:
        page.click("#export-csv")
    path = tmp_path / "session.csv"
    dl.value.save_as(str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["ref_id"], r["count"]) for r in rows[:2]] == [("cover-002", "1"), (alt, "1")]
    assert rows[1]["corrected_from"] == "cover-005" and rows[0]["price"] == "4.5"

    # the correction is a labelled example; the session survives a reload
    labels = site.client.get("/api/feedback/export")
    assert labels.status_code == 200 and b"truth.csv" in labels.content
    page.reload()
    page.wait_for_function("document.querySelectorAll('#session-items li').length === 2")
    assert page.input_value("#session-select") == sid
    page.click("#session-undo")
    page.wait_for_function("document.querySelectorAll('#session-items li').length === 1")
    shot = tmp_path / "screenshot_session.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    assert not errors, errors
    page.close()


def test_session_on_a_phone_screen(browser, site: SimpleNamespace, tmp_path: Path) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(site.url)
    page.wait_for_function("document.getElementById('session-select').options.length > 0")
    p2 = tmp_path / "phone.jpg"
    p2.write_bytes(site.world["photo"])
    n = page.evaluate("document.querySelectorAll('#session-items li').length")
    page.set_input_files("#file", str(p2))
    page.wait_for_function(f"document.querySelectorAll('#session-items li, #session-items li').length >= {max(n, 1)}")
    page.wait_for_function("document.getElementById('decision').textContent === 'accept'")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page is {overflow}px wider than the phone screen"
    drop, aside = page.locator("#drop").bounding_box(), page.locator("#session").bounding_box()
    result = page.locator("#result").bounding_box()
    assert aside["width"] > 300 and drop["y"] < aside["y"] < result["y"]  # right under the drop zone
    shot = tmp_path / "screenshot_session_phone.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    context.close()


def test_live_fusion_rules(browser, site: SimpleNamespace) -> None:  # noqa: F811
    """The fusion the live mode runs: consistent frames accept, a one-frame flicker does not, added once."""
    page = browser.new_page()
    page.goto(site.url)
    out = page.evaluate(
        """() => {
        const f = new LiveFusion(3, 2);
        const fr = (id, d = "accept") =>
            id ? { decision: d, match: { id, name: id } } : { decision: "reject", match: { id: "z", name: "z" } };
        const seq = [fr("a"), fr("b"), fr("a"), fr("a"), fr("a"), fr("b"), fr("a"), fr("a"), fr(null), fr(null),
                     fr("a", "review"), fr("a", "review"), fr("a", "review"), fr("a"), fr("a"), fr("a")];
        return seq.map((x) => {
            const r = f.push(x);
            return [r.tracked ? r.tracked.id : null, r.add ? r.add.id : null];
        });
    }"""
    )
    tracked = [t for t, _ in out]
    adds = [(i, a) for i, (_, a) in enumerate(out) if a]
    assert tracked[:4] == [None, None, None, None]  # a, b, a: not consistent yet; a, a: only two
    assert tracked[4] == "a" and adds[0] == (4, "a")  # three in a row
    assert tracked[5] == "a" and tracked[6:8] == ["a", "a"]  # the "b" flicker neither replaces nor adds
    assert tracked[8] == "a" and tracked[9] is None  # gone after two empty frames
    assert tracked[12] is None  # three reviews in a row are not enough without an accept
    assert adds == [(4, "a"), (13, "a")]  # added once per appearance, never once per frame
    page.close()


def _write_y4m(path: Path, frames: list, fps: int = 10) -> None:
    """A raw YUV4MPEG2 video (what Chromium's fake camera plays, looping)."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420).tobytes())


def test_live_camera_adds_a_steady_item_once(browser, site: SimpleNamespace, tmp_path: Path) -> None:  # noqa: F811
    """A fake camera films cover 5 for a while: the page tracks it and adds it to the session once; the
    frames it sends are downscaled, and it never has more than one request in flight."""
    import cv2
    import numpy as np

    scene = cv2.imdecode(np.frombuffer(scene_jpeg(5, 40, (1280, 960))[0], np.uint8), cv2.IMREAD_COLOR)
    video = tmp_path / "camera.y4m"
    _write_y4m(video, [scene] * 4)
    sid = site.client.post("/api/sessions", json={"name": "live"}).json()["id"]
    sent: list[str] = []
    # The page's own fetch, watched from inside: the size of every image it posts, and how many
    # POSTs are in flight at once.
    watch = """
    window.__frames = []; window.__inflight = 0; window.__maxInflight = 0;
    const realFetch = window.fetch;
    window.fetch = async (url, opts = {}) => {
      const post = opts.method === "POST" && String(url).startsWith("/api/");
      if (post && opts.body instanceof FormData && opts.body.get("file")) {
        const bmp = await createImageBitmap(opts.body.get("file"));
        window.__frames.push([bmp.width, bmp.height]);
      }
      if (post) { window.__inflight += 1; window.__maxInflight = Math.max(window.__maxInflight, window.__inflight); }
      try { return await realFetch(url, opts); } finally { if (post) window.__inflight -= 1; }
    };
    """
    # a browser of its own: the fake camera's file is a launch flag
    b = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True, args=[*ARGS, f"--use-file-for-fake-video-capture={video}"]
    )
    try:
        context = b.new_context(viewport={"width": 1000, "height": 800}, permissions=["camera"])
        page = context.new_page()
        page.on("request", lambda r: sent.append(r.url) if "/api/" in r.url and r.method == "POST" else None)
        page.add_init_script(watch)
        page.add_init_script(f"localStorage.setItem('cover-id-session', '{sid}')")
        page.goto(site.url)
        page.wait_for_function(f"document.getElementById('session-select').value === '{sid}'")
        page.click("#cam-start")
        page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=20_000)
        page.check("#live")
        page.wait_for_function(
            "document.getElementById('tracking').textContent.includes('Film number 5')", timeout=60_000
        )
        page.wait_for_function("document.querySelectorAll('#session-items li').length === 1", timeout=20_000)
        deadline = time.monotonic() + 4  # a few more frames of the same cover
        n_frames = sum(u.endswith("/api/identify") for u in sent)
        while time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert sum(u.endswith("/api/identify") for u in sent) > n_frames  # still filming
        page.click("#cam-stop")
        frames, max_inflight = page.evaluate("[window.__frames, window.__maxInflight]")
        context.close()
    finally:
        b.close()
    s = site.client.get(f"/api/sessions/{sid}").json()
    assert [(i["ref_id"], i["count"]) for i in s["items"]] == [("cover-005", 1)]  # once, not once per frame
    assert sum("/items" in u for u in sent) == 1
    assert len(frames) >= 4 and all(max(f) == 640 for f in frames), frames  # a 1280 x 960 camera, sent at 640 px
    assert max_inflight == 1  # one request at a time, frames and the session addition alike
