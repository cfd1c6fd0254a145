"""How long `cover-id --help` takes, and proof that it imports nothing heavy."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

HEAVY = ["torch", "open_clip", "cv2", "faiss", "numpy", "fastapi"]


def main(runs: int = 5) -> None:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cover_id", "--help"], capture_output=True, check=True)
        times.append((time.perf_counter() - t) * 1000)
    code = (
        "import sys; from cover_id.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    loaded = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    )
    print(f"cover-id --help: median {statistics.median(times):.0f} ms over {runs} runs (min {min(times):.0f} ms)")
    print(f"heavy modules imported by --help: {loaded}")


if __name__ == "__main__":
    main()
