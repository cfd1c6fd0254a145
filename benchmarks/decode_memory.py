"""Peak memory of `cover-id serve` for hostile uploads: huge declared sizes, bombs, big non-JPEG images.

Starts `cover-id serve` as a subprocess on a small synthetic index, a fresh one
per upload (memory the allocator keeps after one request would blur the next),
uploads the image to /api/identify and prints the HTTP status, the time and the
server's peak resident memory (VmHWM) after a warm-up request, then the peak
when ``--workers`` times two big uploads arrive at once. Every upload is under
the 10 MB limit. Identifying a photo that is not accepted at once includes a
second look at 1600 px (RootSIFT on up to 2.6 MP): that, not decoding, sets
the floor of the peak (see the phone photo rows).

    python benchmarks/decode_memory.py [--workers 2] [--only NAME]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def uploads() -> list[tuple[str, bytes]]:
    """(name, bytes) of the worst cases, each under 10 MB."""
    import numpy as np
    from PIL import Image

    from tests.fuzz_cases import encode, png, png_text_bomb, png_zero_bomb

    def zeros_png(w: int, h: int, colour: int, channels: int, depth: int = 8) -> bytes:
        import zlib

        comp = zlib.compressobj(9)
        row = b"\0" * (w * channels * depth // 8 + 1)
        return png(
            w, h, b"".join([comp.compress(row) for _ in range(h)] + [comp.flush()]), bit_depth=depth, colour=colour
        )

    def smooth(w: int, h: int) -> Image.Image:
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        return Image.fromarray(np.dstack([(x + 0 * y), (y + 0 * x), (x + y) / 2]).astype(np.uint8), "RGB")

    out = [
        ("issue: PNG 10950x10950 grey bomb (120 KB)", png_zero_bomb(10950, 10950)),
        ("PNG 7000x7000 grey bomb (49 MP)", png_zero_bomb(7000, 7000)),
        ("PNG 7000x7000 RGBA zeros (49 MP)", zeros_png(7000, 7000, 6, 4)),
        ("PNG 7000x7000 16-bit grey (49 MP)", zeros_png(7000, 7000, 0, 1, 16)),
        ("PNG 5000x5000 16-bit RGBA (25 MP)", zeros_png(5000, 5000, 6, 4, 16)),
        ("PNG 7000x7000 palette (49 MP)", encode(Image.new("P", (7000, 7000)), "PNG", optimize=True)),
        ("PNG text-chunk bomb (3 KB)", png_text_bomb()),
        (
            "TIFF 7000x7000 RGB deflate (49 MP)",
            encode(Image.new("RGB", (7000, 7000)), "TIFF", compression="tiff_adobe_deflate"),
        ),
        ("WebP 16000x3000 lossless (48 MP)", encode(Image.new("RGB", (16000, 3000)), "WEBP", lossless=True)),
        ("WebP 5600x4400 lossless (25 MP)", encode(Image.new("RGB", (5600, 4400)), "WEBP", lossless=True)),
    ]
    big = smooth(10950, 10950)
    out.append(("JPEG 10950x10950 smooth (120 MP)", encode(big, "JPEG", quality=30)))
    del big
    out.append(("JPEG 3000x3000 square photo (9 MP)", encode(smooth(3000, 3000), "JPEG", quality=85)))
    out.append(("JPEG 4000x3000 phone photo (12 MP)", encode(smooth(4000, 3000), "JPEG", quality=85)))
    return [(n, d) for n, d in out if len(d) <= 10 * 1024 * 1024]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="server worker threads")
    ap.add_argument("--only", default="", help="only uploads whose name contains this")
    args = ap.parse_args()

    from cover_id.index.build import build_index
    from tests.conftest import write_covers

    global WARM_UP
    from tests.fuzz_cases import base_image, encode

    WARM_UP = encode(base_image(320, 240), "JPEG")
    work = Path(tempfile.mkdtemp(prefix="cover-id-mem-"))
    write_covers(work / "refs", 6)
    build_index(work / "idx", refs=work / "refs", settings={"encoder": "local", "threads": 1}, show_progress=False)
    cases = [(n, d) for n, d in uploads() if args.only in n]
    print(f"{'upload':44s} {'size':>8s} {'HTTP':>4s} {'ms':>7s} {'peak RSS':>9s} {'idle':>7s}  answer")
    for name, data in cases:
        with Server(work / "idx", args.workers) as srv:
            r = srv.post(data)
            answer = r.json().get("detail") or r.json().get("decision")
            print(
                f"{name:44s} {len(data) / 1e3:7.0f}K {r.status_code:4d} {srv.ms:7.0f} {srv.peak():7.0f} MB "
                f"{srv.idle:4.0f} MB  {str(answer)[:60]}"
            )
    big = [(n, d) for n, d in cases if re.search(r"\((4[89]|25|120) MP\)", n)]
    if big:
        with Server(work / "idx", args.workers) as srv:
            batch = (big * 2 * args.workers)[: 2 * args.workers]
            t = time.perf_counter()
            with ThreadPoolExecutor(len(batch)) as pool:
                codes = list(pool.map(lambda nd: srv.post(nd[1]).status_code, batch))
            print(
                f"{len(batch)} big uploads at once ({args.workers} workers): HTTP {sorted(set(codes))}, "
                f"{time.perf_counter() - t:.1f} s, peak RSS {srv.peak():.0f} MB (idle {srv.idle:.0f} MB)"
            )


class Server:
    """`cover-id serve` in a subprocess, warmed up, with its peak memory reset."""

    def __init__(self, index: Path, workers: int) -> None:
        self.index, self.workers, self.ms = index, workers, 0.0

    def __enter__(self) -> "Server":
        import httpx

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cover_id",
                "serve",
                "--index",
                str(self.index),
                "--port",
                "0",
                "--workers",
                str(self.workers),
                "--threads",
                "1",
                "--log-level",
                "warning",
            ],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        line = ""
        while "http://" not in line:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise SystemExit("serve exited before it was ready")
        self.client = httpx.Client(base_url=re.search(r"http://[^/ ]+", line).group(0), timeout=600)
        self.post(WARM_UP)  # imports and first-call allocations
        time.sleep(0.2)
        reset_peak(self.proc.pid)
        self.idle = peak_mb(self.proc.pid)
        return self

    def post(self, data: bytes):
        t = time.perf_counter()
        r = self.client.post("/api/identify", files={"file": ("upload", data, "application/octet-stream")})
        self.ms = (time.perf_counter() - t) * 1000
        return r

    def peak(self) -> float:
        return peak_mb(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


WARM_UP = b""


if __name__ == "__main__":
    main()
