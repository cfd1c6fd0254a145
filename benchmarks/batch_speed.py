"""Batch identify throughput through the public CLI: photos per second on a folder.

Runs ``cover-id identify FOLDER --index INDEX --json`` on the dev photos of each set
with the default workers (one per core) and, for comparison, ``--workers 1``,
alternating the two ``--runs`` times. The time includes the process start and the
index open, as a user sees it. Answers of both runs are compared photo for photo.

    python benchmarks/batch_speed.py [--sets dvd-covers books] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DATA, SETS, set_index


def run(folder: Path, index: Path, workers: int | None) -> tuple[float, list[dict]]:
    args = [sys.executable, "-m", "cover_id", "identify", str(folder), "--index", str(index), "--json"]
    if workers is not None:
        args += ["--workers", str(workers)]
    t = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode not in (0, 1):
        sys.exit(f"identify failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def answers(rows: list[dict]) -> list[tuple]:
    return [(r["input"], r["decision"], (r.get("match") or {}).get("filename")) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=["dvd-covers", "books"])
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    print("| set | photos | default workers: photos/s | --workers 1: photos/s | ratio | same answers |")
    print("|---|---|---|---|---|---|")
    for name in args.sets:
        index = set_index(name)
        folder = DATA / name / "photos"
        n = len([p for p in folder.iterdir() if p.is_file()])
        par, seq, same = [], [], True
        for _ in range(args.runs):
            t_par, a = run(folder, index, None)
            t_seq, b = run(folder, index, 1)
            par.append(t_par)
            seq.append(t_seq)
            same = same and answers(a) == answers(b)
        best_par, best_seq = min(par), min(seq)
        print(
            f"| {name} | {n} | {n / best_par:.1f} | {n / best_seq:.1f} | {best_seq / best_par:.2f}x | "
            f"{'yes' if same else 'NO'} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
