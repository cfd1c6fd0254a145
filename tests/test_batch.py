"""Batch work on several cores: parallel results equal sequential ones, in the same order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cover_id.cli import app
from cover_id.commands.identify import batch_workers, in_order, use_processes
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
    shown = (1, 2, 3, 4, 6, 7, 8, 11, 30)  # e63_030 shows a cover that is not in this collection
    for n in shown:
        (photos / f"e63_{n:03d}.jpg").symlink_to(dvd / "photos" / f"e63_{n:03d}.jpg")
    (photos / "e63_005.jpg").write_bytes(b"not a jpeg")  # one bad file: one error entry in its place
    assert use_processes(len(shown), 2, "local") and not use_processes(3, 2, "local")

    runs = {}
    for workers in (1, 2):  # in turn, then on two worker processes
        args = ["identify", str(photos), "--index", str(tmp_path / "idx"), "--json"]
        res = CliRunner().invoke(app, [*args, "--workers", str(workers), "--session", f"w{workers}"])
        assert res.exit_code == 1, res.output  # some photo failed, the batch went on
        runs[workers] = [json.loads(line) for line in res.stdout.splitlines()]
    few = [str(photos / f"e63_{n:03d}.jpg") for n in (1, 2, 30)]  # too few photos for processes: two threads
    res = CliRunner().invoke(app, ["identify", *few, "--index", str(tmp_path / "idx"), "--json", "--workers", "2"])
    assert res.exit_code == 0, res.output
    on_threads = [json.loads(line) for line in res.stdout.splitlines()]
    by_name = {r["input"]: r for r in runs[1]}
    assert [_without_timings(r) for r in on_threads] == [_without_timings(by_name[r["input"]]) for r in on_threads]

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


def _square_or_die(i: int) -> int:
    if i == 3:
        os._exit(1)  # a worker process killed mid-photo (a crash in a native library, the OOM killer)
    return i * i


def test_in_order_survives_a_worker_process_that_dies() -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pools = []

    def make(n: int) -> ProcessPoolExecutor:
        pools.append(n)
        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))

    out = list(in_order(_square_or_die, range(8), 2, make, lost=lambda i: -i))
    assert out == [0, 1, 4, -3, 16, 25, 36, 49]  # the lost item in its place, the others all done
    assert pools[0] == 2 and pools[-1] == 2 and 1 in pools  # the suspects were run one at a time
    with pytest.raises(BrokenProcessPool):  # without ``lost`` a dead worker is the caller's to handle
        list(in_order(_square_or_die, range(8), 2, make))


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


def test_identify_runs_blas_on_one_thread_and_keeps_freed_memory(covers: Path, tmp_path: Path) -> None:
    """The identifier's pool is the parallelism: every loaded BLAS gets one thread (their default, one per core,
    had read its count before any command could set it), and glibc keeps freed blocks for the next photo."""
    import platform

    from threadpoolctl import threadpool_info, threadpool_limits

    from cover_id.pipeline import Identifier
    from cover_id.runtime import keep_freed_memory

    build_index(tmp_path / "idx", refs=covers, settings={"encoder": "local"}, show_progress=False)
    with threadpool_limits(2, user_api="blas"):  # as a library loaded on a 2-core machine starts
        assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {2}
        identifier = Identifier.from_index(tmp_path / "idx", {"threads": 2})
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas and all(lib["num_threads"] == 1 for lib in blas), blas
        assert identifier.identify(next(covers.glob("*.jpg")))["decision"] == "accept"
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    set_by_environment = any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    )
    assert keep_freed_memory() is (on_glibc and not set_by_environment)


def test_ctrl_c_stops_a_batch_on_worker_processes(covers: Path, tmp_path: Path) -> None:
    """Ctrl-C mid-batch: the results so far are out, one line says why it stopped, exit code 130, and no
    worker process is left behind."""
    import shutil
    import signal

    build_index(tmp_path / "idx", refs=covers, settings={"encoder": "local"}, show_progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    sources = sorted(covers.glob("*.jpg"))
    for k in range(200):
        shutil.copy(sources[k % len(sources)], photos / f"p{k:03d}.jpg")
    assert use_processes(200, 2, "local")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cover_id", "identify", str(photos), "--index", str(tmp_path / "idx"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers are found by it below
        # Ctrl-C's default action, even when this test runs where SIGINT is ignored (a background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["decision"] == "accept"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert len(out.splitlines()) < 199  # stopped early
    deadline = time.time() + 10
    while True:
        try:
            os.killpg(proc.pid, 0)  # anything left in the batch's process group?
        except ProcessLookupError:
            break
        assert time.time() < deadline, "worker processes outlived the interrupted batch"
        time.sleep(0.1)
