"""Hundreds of malformed, hostile and odd inputs through `identify`, `index` and a real uvicorn server.

The corpus (``tests/fuzz_cases.py``): truncations at many offsets, overwritten
bytes, random bytes named like images, random bytes behind each format's
magic, other formats renamed, decompression bombs and absurd declared sizes,
odd dimensions, every EXIF orientation, odd colour modes and layouts, odd and
non-UTF-8 file names; plus folders, pipes, broken links and link loops among
the inputs. What must hold: no traceback, no 5xx, every input answered in its
batch (an error entry naming the file when it is bad), every good photo in the
same batch still identified correctly.
"""

from __future__ import annotations

import csv
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

httpx = pytest.importorskip("httpx")

from tests.conftest import write_covers  # noqa: E402
from tests.fuzz_cases import Case, corpus  # noqa: E402

KEY = "fuzz-key"
GOOD = (1, 3, 5)  # covers photographed in the good photos of each batch
CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b")


def scene_jpeg(cover: int, seed: int) -> bytes:
    import cv2
    import numpy as np

    from cover_id.evaluate.synth import make_background, make_cover, place_in_scene

    rng = np.random.default_rng(seed)
    scene, _ = place_in_scene(make_cover(cover, (240, 320)), make_background(seed, (800, 600)), rng)
    return cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "4000", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cover_id", *args], capture_output=True, timeout=600, env=env, **kwargs
    )


def assert_clean_stderr(stderr: bytes) -> None:
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text[-3000:]
    assert not re.search(r"\w+Warning:", text), text[-3000:]  # a Python warning printed for a user to read


def make_odd_tree(tree: Path, photo: Path) -> Path:
    """A folder holding a good photo, a link loop, a broken link and a named pipe."""
    (tree / "sub").mkdir(parents=True)
    shutil.copy(photo, tree / "sub" / "good_again.jpg")
    os.symlink(tree, tree / "sub" / "loop")
    os.symlink(tree / "nowhere.png", tree / "dangling.png")
    os.mkfifo(tree / "fifo.png")
    return tree


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    """An index of 6 covers, the corpus written as files, good photos, and odd file-system entries."""
    from cover_id.index.build import build_index

    root = tmp_path_factory.mktemp("fuzz")
    write_covers(root / "refs", 6)
    build_index(root / "idx", refs=root / "refs", settings={"encoder": "local", "threads": 1}, show_progress=False)
    cases = corpus()
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    folder = root / "cases"
    folder.mkdir()
    for c in cases:
        (folder / c.name).write_bytes(c.data)
    good = {}
    for k in GOOD:
        good[k] = root / f"good_cover_{k}.jpg"
        good[k].write_bytes(scene_jpeg(k, 100 + k))
    odd = root / "odd"
    odd.mkdir()
    (odd / "empty folder").mkdir()
    (odd / "folder.jpg").mkdir()
    os.mkfifo(odd / "pipe.jpg")
    os.symlink(odd / "missing.jpg", odd / "broken_link.jpg")
    tree = make_odd_tree(odd / "tree", good[GOOD[0]])
    return SimpleNamespace(root=root, index=root / "idx", cases=cases, folder=folder, good=good, odd=odd, tree=tree)


def test_the_corpus_is_large_and_varied(world: SimpleNamespace) -> None:
    kinds = {c.kind for c in world.cases}
    assert len(world.cases) >= 500
    assert kinds >= {"truncated", "corrupted", "random", "magic", "renamed", "bomb", "dims", "exif", "mode", "name"}
    assert sum(c.expect == "ok" for c in world.cases) >= 80


# ---- identify -------------------------------------------------------------------------------
def test_identify_answers_every_input_of_one_batch(world: SimpleNamespace) -> None:
    from cover_id.imageio import display_name

    cases = world.cases
    half = len(cases) // 2
    g1, g2, g3 = (world.good[k] for k in GOOD)
    explicit = [g1, *(world.folder / c.name for c in cases[:half]), g2, *(world.folder / c.name for c in cases[half:])]
    odd = [world.odd / "empty folder", world.odd / "folder.jpg", world.odd / "pipe.jpg", world.odd / "broken_link.jpg"]
    args = [*map(str, explicit + odd), str(world.tree), str(g3)]
    csv_path = world.root / "fuzz.csv"
    out = run_cli("identify", *args, "--index", str(world.index), "--json", "--csv", str(csv_path))
    assert_clean_stderr(out.stderr)
    assert out.returncode == 1, out.stderr.decode(errors="replace")[-2000:]
    results = [json.loads(line) for line in out.stdout.decode("utf-8").splitlines()]  # strict UTF-8: no raw bytes

    expect = {str(world.folder / c.name): c for c in cases}
    tree_entries = 4  # sub/good_again.jpg; dangling.png, fifo.png, sub/loop as error entries
    assert len(results) == len(explicit) + len(odd) + tree_entries + 1
    problems = []
    for arg, r in zip(explicit + odd, results):
        name = display_name(str(arg))
        if r["input"] != name:
            problems.append(f"out of order: {r['input']!r} where {name!r} was expected")
            continue
        case = expect.get(str(arg))
        if r["decision"] == "error":
            msg = r.get("error", "")
            if display_name(arg.name) not in msg or "unexpected error" in msg or "\n" in msg.replace(arg.name, ""):
                problems.append(f"{name}: unclear error {msg!r}")
            if case is not None and case.expect == "ok":
                problems.append(f"{name}: a valid image was refused: {msg}")
        elif case is not None and case.expect == "error":
            problems.append(f"{name}: should have been refused, got {r['decision']}")
        elif case is None and arg in world.odd.iterdir():
            problems.append(f"{name}: should be an error entry, got {r['decision']}")
    assert not problems, "\n".join(problems[:40])

    by_input = {r["input"]: r for r in results}
    for k, photo in zip(GOOD, (g1, g2, g3)):
        r = by_input[str(photo)]
        assert r["decision"] == "accept" and r["match"]["id"] == f"cover-{k:03d}", r
    tree = [r for r in results[len(explicit) + len(odd) : -1]]
    assert [r["decision"] for r in tree].count("accept") == 1
    assert sorted(Path(r["input"]).name for r in tree if r["decision"] == "error") == [
        "dangling.png",
        "fifo.png",
        "loop",
    ]
    with open(csv_path, newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(results)


def test_identify_prints_odd_names_safely_as_text(world: SimpleNamespace) -> None:
    """The human output, not only the JSON: odd names neither crash it nor pass for markup."""
    names = [c.name for c in world.cases if c.kind == "name"]
    out = run_cli("identify", *(str(world.folder / n) for n in names), "--index", str(world.index))
    assert_clean_stderr(out.stderr)
    text = out.stdout.decode("utf-8")  # strict: a name that is not UTF-8 is printed escaped
    assert out.returncode == 0, text[-2000:]
    assert "[bold red]x.jpg" in text and "caf\\xe9.jpg" in text


# ---- index ------------------------------------------------------------------------------------
def test_index_skips_each_bad_reference_with_its_reason(world: SimpleNamespace) -> None:
    from cover_id.errors import ImageError
    from cover_id.imageio import display_name, read_image
    from cover_id.index.build import REF_MAX_SIDE
    from cover_id.index.catalog import walk_images

    refs = world.root / "fuzz_refs"
    shutil.copytree(world.root / "refs", refs)
    for c in world.cases:
        (refs / c.name).write_bytes(c.data)
    make_odd_tree(refs / "tree", world.good[GOOD[0]])
    found, skipped = walk_images(refs)
    readable, refused = [], []
    for p in found:
        try:
            read_image(p, max_side=REF_MAX_SIDE)
            readable.append(p)
        except ImageError:
            refused.append(display_name(p.relative_to(refs).as_posix()))
    out = run_cli(
        "index", "--refs", str(refs), "--out", str(world.root / "fuzz_idx"), "--encoder", "local", "--threads", "1"
    )
    assert_clean_stderr(out.stderr)
    text = out.stdout.decode("utf-8")
    assert out.returncode == 0, text[-3000:] + out.stderr.decode(errors="replace")[-3000:]
    listed = dict(re.findall(r"^  (.+?): (.+)$", text.split("skipped", 1)[1].split("indexed", 1)[0], re.M))
    missing = [n for n in refused + [s.filename for s in skipped] if not listed.get(n)]
    assert not missing, f"not listed as skipped with a reason: {missing[:20]}"
    assert {"tree/dangling.png", "tree/fifo.png", "tree/sub/loop", "caf\\xe9.jpg"} <= set(listed)
    info = run_cli("info", str(world.root / "fuzz_idx"), "--json")
    assert json.loads(info.stdout)["count"] == len(readable) > 6 + 50


# ---- the HTTP API on a real uvicorn server ----------------------------------------------------
@pytest.fixture(scope="module")
def server(world: SimpleNamespace) -> Iterator[SimpleNamespace]:
    from cover_id.pipeline import Identifier
    from cover_id.server import create_app, start_in_thread

    index = world.root / "served_idx"
    shutil.copytree(world.index, index)
    ident = Identifier.from_index(index, {"threads": 1})
    srv = start_in_thread(create_app(ident, index, {"workers": 2, "api_key": KEY, "max_upload_mb": 10}))
    client = httpx.Client(base_url=srv.url, timeout=120)
    yield SimpleNamespace(client=client, index=index, root=world.root)
    client.close()
    srv.stop()


def upload(name: str, data: bytes) -> dict:
    from cover_id.imageio import display_name

    shown = display_name(name)
    ctype = mimetypes.guess_type(shown.lower())[0] or "application/octet-stream"
    return {"file": (shown, data, ctype)}


def check_error_body(r: "httpx.Response", root: Path) -> str | None:
    """What is wrong with an error answer, if anything."""
    if r.status_code >= 500:
        return f"HTTP {r.status_code}: {r.text[:300]}"
    if r.status_code < 300:
        return None
    detail = r.json().get("detail")
    if not isinstance(detail, str) or not detail:
        return f"HTTP {r.status_code} without a detail message: {r.text[:300]}"
    if str(root) in detail or "site-packages" in detail or "Traceback" in detail:
        return f"a server path or traceback in {detail!r}"
    if CLASS_NAME.search(detail):
        return f"an exception class in {detail!r}"
    return None


def test_server_answers_every_input_without_5xx(server: SimpleNamespace, world: SimpleNamespace) -> None:
    client = server.client
    goods = [Case(f"good_{k}.jpg", p.read_bytes(), "good", "ok") for k, p in world.good.items()]
    batch = [goods[0], *world.cases[: len(world.cases) // 2], goods[1], *world.cases[len(world.cases) // 2 :], goods[2]]

    def ask(case: Case) -> tuple[Case, "httpx.Response", "httpx.Response"]:
        ident = client.post("/api/identify", files=upload(case.name, case.data))
        search = client.post("/api/search-by-image?k=3", files=upload(case.name, case.data))
        return case, ident, search

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, batch))
    problems = []
    for case, ident, search in answers:
        for r in (ident, search):
            wrong = check_error_body(r, server.root)
            if wrong:
                problems.append(f"{case.name!r} {r.request.url.path}: {wrong}")
        if case.expect == "ok" and ident.status_code != 200:
            problems.append(f"{case.name!r}: a valid image got HTTP {ident.status_code}: {ident.text[:200]}")
        if case.expect == "error" and ident.status_code not in (400, 415):
            problems.append(f"{case.name!r}: should be refused with 400/415, got HTTP {ident.status_code}")
    assert not problems, "\n".join(problems[:40])
    for k, (_, ident, _) in zip(GOOD, [a for a in answers if a[0].kind == "good"]):
        body = ident.json()
        assert body["decision"] == "accept" and body["match"]["id"] == f"cover-{k:03d}", body


def test_server_add_refuses_bad_references_and_keeps_working(server: SimpleNamespace, world: SimpleNamespace) -> None:
    client = server.client
    picks = [c for c in world.cases if c.kind in ("bomb", "mode", "dims", "renamed")] + world.cases[:240:12]
    problems = []
    added = 0
    for i, case in enumerate(picks):
        r = client.post(
            "/api/refs", files=upload(case.name, case.data), data={"name": f"fuzz {i}"}, headers={"X-API-Key": KEY}
        )
        wrong = check_error_body(r, server.root)
        if wrong:
            problems.append(f"{case.name!r}: {wrong}")
        if case.expect == "error" and r.status_code == 201:
            problems.append(f"{case.name!r}: a bad image was added")
        added += r.status_code == 201
    assert not problems, "\n".join(problems[:40])
    assert added >= 30
    assert client.get("/api/refs", params={"limit": 500}).json()["total"] == 6 + added
    k = GOOD[0]
    body = client.post("/api/identify", files=upload("again.jpg", world.good[k].read_bytes())).json()
    assert body["decision"] == "accept" and body["match"]["id"] == f"cover-{k:03d}", body


def test_no_absolute_server_path_in_any_response(server: SimpleNamespace, world: SimpleNamespace) -> None:
    client = server.client
    added = client.post(
        "/api/refs",
        files=upload("pathcheck.jpg", world.good[GOOD[1]].read_bytes()),
        data={"name": "path check"},
        headers={"X-API-Key": KEY},
    )
    assert added.status_code == 201, added.text
    ref_id = added.json()["id"]
    bodies = [added.text]
    for path in ["/health", "/api/refs?limit=500", f"/api/refs/{ref_id}", "/api/stats"]:
        bodies.append(client.get(path).text)
    bodies.append(client.post("/api/identify", files=upload("p.jpg", world.good[GOOD[1]].read_bytes())).text)
    bodies.append(client.post("/api/search-by-image", files=upload("p.jpg", world.good[GOOD[1]].read_bytes())).text)
    leaks = [b[:200] for b in bodies if str(server.root) in b or str(server.root.resolve()) in b]
    assert not leaks, leaks


def test_the_key_is_checked_before_the_upload_is_parsed(server: SimpleNamespace) -> None:
    r = server.client.post(
        "/api/refs", content=b"--x\r\nnot a form", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 401, r.text
