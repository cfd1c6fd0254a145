"""Load test for `cover-id serve`: bounded concurrent POST /api/identify on loopback.

Starts `cover-id serve` (a real uvicorn server) as a subprocess on a free loopback
port, sends ``--clients`` x ``--requests`` identify requests (real DVD photos from
shared/data/dvd-covers against references + distractors when present, synthetic
scenes otherwise), each client waiting for its answer before sending the next, and
prints requests/s, latency p50/p95/max, correct matches, busy (503) answers and the
server's resident memory (RSS) at start, after warm-up and every 250 requests.
By default 4 clients x 250 = 1,000 requests, the server with its default
concurrency (one photo per usable core).

    python benchmarks/serve_load.py [--clients 4] [--requests 250] [--workers N] [--distractors 258]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DVD = ROOT.parent / "shared" / "data" / "dvd-covers"
sys.path.insert(0, str(ROOT))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dvd_workload(work: Path, distractors: int) -> tuple[Path, list[tuple[str, bytes, str]]]:
    """Index of the 100 references + distractors; photos with the id they show."""
    from cover_id.index.build import build_index

    photos = []
    for p in sorted((DVD / "photos").glob("e63_*.jpg")):
        num = p.stem.split("_")[1]
        photos.append((p.name, p.read_bytes(), f"references--{num}"))
    if distractors == 258:  # all of them: the benchmarks' cached index (built once)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from common import dvd_index

        index = work / "idx"
        shutil.copytree(dvd_index("local"), index)  # a copy: the server may write beside it
        return index, photos
    refs = work / "refs"
    shutil.copytree(DVD / "references", refs / "references")
    for p in sorted((DVD / "distractors").glob("*.jpg"))[:distractors]:
        (refs / "distractors").mkdir(exist_ok=True)
        shutil.copy(p, refs / "distractors" / p.name)
    t = time.perf_counter()
    build_index(work / "idx", refs=refs, settings={"encoder": "local", "threads": 2}, show_progress=False)
    print(f"index: {100 + distractors} references built in {time.perf_counter() - t:.1f} s")
    return work / "idx", photos


def synthetic_workload(work: Path) -> tuple[Path, list[tuple[str, bytes, str]]]:
    from tests.test_serve import build_world, scene_jpeg

    build_world(work, n=30)
    photos = []
    for i in range(30):
        data, _ = scene_jpeg(i, 100 + i)
        photos.append((f"scene_{i}.jpg", data, f"cover-{i:03d}"))
    return work / "idx", photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=250, help="per client")
    ap.add_argument("--workers", type=int, default=None, help="server worker threads (default: the server's)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per photo (default: cores / workers)")
    ap.add_argument("--distractors", type=int, default=258)
    ap.add_argument("--synthetic", action="store_true", help="ignore the real data")
    args = ap.parse_args()

    import httpx

    work = Path(tempfile.mkdtemp(prefix="cover-id-load-"))
    try:
        if DVD.is_dir() and not args.synthetic:
            index, photos = dvd_workload(work, args.distractors)
            kind = "real DVD photos (1600x1200)"
        else:
            index, photos = synthetic_workload(work)
            kind = "synthetic scenes (960x720)"
        cmd = [sys.executable, "-m", "cover_id", "serve", "--index", str(index), "--port", "0"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            line = ""
            while "http://" not in line:
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    raise SystemExit("serve exited before it was ready")
            url = re.search(r"http://[^/ ]+", line).group(0)
            rss_start = rss_mb(proc.pid)
            with httpx.Client(base_url=url, timeout=300) as c:
                for name, data, _ in photos[:2]:  # warm-up
                    c.post("/api/identify", files={"file": (name, data, "image/jpeg")})
                workers = c.get("/health").json()["workers"]
            rss_warm = rss_mb(proc.pid)
            done = [0]
            rss_seen: list[tuple[int, float]] = []
            lock = threading.Lock()

            def client(k: int) -> list[tuple[float, bool, int]]:
                out = []
                with httpx.Client(base_url=url, timeout=300) as c:
                    for j in range(args.requests):
                        name, data, truth = photos[(k * args.requests + j) % len(photos)]
                        t = time.perf_counter()
                        r = c.post("/api/identify", files={"file": (name, data, "image/jpeg")})
                        dt = time.perf_counter() - t
                        body = r.json()
                        ok = (
                            r.status_code == 200
                            and body.get("decision") == "accept"
                            and (body.get("match") or {}).get("id") == truth
                        )
                        out.append((dt, ok, r.status_code))
                        with lock:
                            done[0] += 1
                            if done[0] % 250 == 0:
                                rss_seen.append((done[0], rss_mb(proc.pid)))
                return out

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = [x for chunk in pool.map(client, range(args.clients)) for x in chunk]
            wall = time.perf_counter() - t0
            rss_end = rss_mb(proc.pid)
            lat = sorted(x[0] * 1000 for x in results)
            n = len(results)
            busy = sum(1 for x in results if x[2] == 503)
            errors = sum(1 for x in results if x[2] not in (200, 503))
            p95 = lat[min(n - 1, int(round(0.95 * (n - 1))))]
            threads = args.threads or "cores / workers"
            print(f"workload: {kind}; {len(photos)} distinct photos; server workers {workers}, threads {threads}")
            print(f"requests: {n} ({args.clients} clients x {args.requests}), busy (503): {busy}, errors: {errors}")
            print(f"throughput: {n / wall:.2f} requests/s over {wall:.1f} s")
            print(
                f"latency ms: p50 {statistics.median(lat):.0f}, p95 {p95:.0f}, mean {statistics.fmean(lat):.0f}, max {lat[-1]:.0f}"
            )
            print(f"accepted with the right match: {sum(x[1] for x in results)}/{n}")
            steps = ", ".join(f"{rss:.0f} MB after {k}" for k, rss in rss_seen)
            print(f"server RSS: {rss_start:.0f} MB at start, {rss_warm:.0f} MB after warm-up; {steps or '-'}")
            print(f"server RSS after all {n} requests: {rss_end:.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
