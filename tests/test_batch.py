"""Batch work on several cores: parallel results equal sequential ones, in the same order."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cover_id.cli import app
from cover_id.commands.identify import batch_workers, in_order
from cover_id.index.build import AUTO_WORKERS_FROM, auto_workers, build_index
from cover_id.runtime import thread_count


def _without_timings(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "timings_ms"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_parallel_identify_equals_sequential_on_dev_photos(dvd: Path, tmp_path: Path) -> None:
    from cover_id.sessions import SessionStore, sessions_path

    refs = tmp_path / "refs"
    (refs / "references").mkdir(parents=True)
    for i in range(1, 13):
        (refs / "references" / f"{i:03d}.jpg").symlink_to(dvd / "references" / f"{i:03d}.jpg")
    build_index(tmp_path / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in (1, 2, 3, 11, 30):  # e63_030 shows a cover that is not in this collection
        (photos / f"e63_{n:03d}.jpg").symlink_to(dvd / "photos" / f"e63_{n:03d}.jpg")
    (photos / "e63_005.jpg").write_bytes(b"not a jpeg")  # one bad file: one error entry in its place

    runs = {}
    for workers in (1, 2):
        args = ["identify", str(photos), "--index", str(tmp_path / "idx"), "--json"]
        res = CliRunner().invoke(app, [*args, "--workers", str(workers), "--session", f"w{workers}"])
        assert res.exit_code == 1, res.output  # some photo failed, the batch went on
        runs[workers] = [json.loads(line) for line in res.stdout.splitlines()]

    seq, par = runs[1], runs[2]
    assert [r["input"] for r in seq] == [r["input"] for r in par] == sorted(r["input"] for r in seq)
    assert [r["decision"] for r in seq] == [r["decision"] for r in par]
    assert [(r.get("match") or {}).get("filename") for r in seq] == [
        (r.get("match") or {}).get("filename") for r in par
    ]
    assert [_without_timings(r) for r in seq] == [_without_timings(r) for r in par]  # photo for photo, all of it
    assert [r["decision"] for r in seq].count("error") == 1 and "not a jpeg" not in json.dumps(seq)
    accepted = {r["match"]["filename"] for r in seq if r["decision"] == "accept"}
    assert accepted >= {"references/001.jpg", "references/002.jpg", "references/003.jpg", "references/011.jpg"}
    assert all(r["timings_ms"]["total"] > 0 for r in par if r["decision"] != "error")

    store = SessionStore(sessions_path(tmp_path / "idx"))
    items = {s["name"]: store.get(s["id"])["items"] for s in store.list()}
    assert len(items["w1"]) >= 4  # the accepted covers (and the others) went into each session
    assert sorted((str(i["ref_id"]), i["count"]) for i in items["w1"]) == sorted(
        (str(i["ref_id"]), i["count"]) for i in items["w2"]
    )


def test_in_order_keeps_the_order_and_bounds_the_work_in_flight() -> None:
    lock = threading.Lock()
    running, most, started = 0, 0, []

    def slow(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            started.append(i)
        time.sleep(0.02 * ((7 * i) % 5))  # later items often finish first
        with lock:
            running -= 1
        return i * i

    seen = []
    for r in in_order(slow, range(20), 3):
        seen.append(r)
        assert len(started) <= len(seen) + 2 * 3  # never more than 2 x workers ahead of the output
    assert seen == [i * i for i in range(20)] and 1 < most <= 3
    assert list(in_order(slow, [], 2)) == [] and list(in_order(slow, range(4), 1)) == [0, 1, 4, 9]


def test_in_order_passes_on_an_error_and_stops_cleanly() -> None:
    def boom(i: int) -> int:
        if i == 3:
            raise ValueError("photo 3")
        return i

    out = []
    with pytest.raises(ValueError, match="photo 3"):
        for r in in_order(boom, range(10), 2):
            out.append(r)
    assert out == [0, 1, 2]


def test_default_worker_counts() -> None:
    cores = thread_count(0)
    assert auto_workers(AUTO_WORKERS_FROM - 1) == 1 and auto_workers(500) == cores and auto_workers(500, 3) == 3
    assert batch_workers(1) == 1 and batch_workers(100) == cores and batch_workers(100, 3) == 3
    assert batch_workers(2, 8) == 2  # never more threads than photos
    assert auto_workers(500, None, 1) == 1 and batch_workers(100, None, 1) == 1  # --threads 1: one core in all


def test_workers_below_one_is_a_clear_error(tmp_path: Path) -> None:
    for args in (
        ["index", "--refs", str(tmp_path), "--out", str(tmp_path / "idx"), "--workers", "0"],
        ["identify", str(tmp_path), "--index", str(tmp_path / "idx"), "--workers", "0"],
    ):
        res = subprocess.run([sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.strip() == "error: --workers must be at least 1 (got 0)", res.stderr
