"""Shared set-up for the benchmarks: the DVD data and an index of it."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DVD = DATA / "dvd-covers"
# The real dev sets: name -> the sub-folders indexed together (distractors only for DVDs).
SETS = {"dvd-covers": ("references", "distractors"), "books": ("references",), "paintings": ("references",)}
CACHE = ROOT / ".cache" / "bench"


def require_data() -> Path:
    if not (DVD / "references").is_dir():
        sys.exit(f"benchmark data not found at {DVD}")
    return DVD


def refs_folder(with_distractors: bool = True) -> Path:
    """references/ (+ distractors/) linked into one folder, so one index holds both."""
    dvd = require_data()
    out = CACHE / ("refs_all" if with_distractors else "refs_only")
    for sub in ["references"] + (["distractors"] if with_distractors else []):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((dvd / sub).iterdir()):
            link = out / sub / f.name
            if not link.exists():
                os.symlink(f, link)
    return out


def dvd_index(encoder: str = "local", rebuild: bool = False) -> Path:
    """Build (once) and return the index of references + distractors."""
    from cover_id.index.build import build_index

    out = CACHE / f"index_{encoder}"
    if rebuild or not (out / "manifest.json").is_file():
        settings = {"encoder": encoder, "threads": 2}
        if encoder == "clip":
            settings["pretrained"] = None
        build_index(out, refs=refs_folder(), settings=settings, show_progress=True, rebuild=rebuild)
    return out


def set_index(name: str, encoder: str = "local", rebuild: bool = False) -> Path:
    """Build (once) and return the index of one dev set (references, + distractors for DVDs)."""
    if name == "dvd-covers":
        return dvd_index(encoder, rebuild)
    from cover_id.index.build import build_index

    root = DATA / name
    if not (root / "references").is_dir():
        sys.exit(f"benchmark data not found at {root}")
    refs = CACHE / f"refs_{name}"
    (refs / "references").mkdir(parents=True, exist_ok=True)
    for f in sorted((root / "references").iterdir()):
        link = refs / "references" / f.name
        if not link.exists():
            os.symlink(f, link)
    out = CACHE / f"index_{name}_{encoder}"
    if rebuild or not (out / "manifest.json").is_file():
        settings = {"encoder": encoder, "threads": 2}
        if encoder == "clip":
            settings["pretrained"] = None
        build_index(out, refs=refs, settings=settings, show_progress=True, rebuild=rebuild)
    return out


def set_truth(name: str) -> list[tuple[Path, str]]:
    """(photo path, reference filename relative to the index root) pairs of one dev set."""
    root = DATA / name
    with open(root / "truth.csv", newline="") as f:
        return [(root / row["photo"], row["reference"]) for row in csv.DictReader(f)]


def truth() -> list[tuple[Path, str]]:
    """(photo path, reference filename relative to the index root) pairs."""
    dvd = require_data()
    with open(dvd / "truth.csv", newline="") as f:
        return [(dvd / row["photo"], row["reference"]) for row in csv.DictReader(f)]


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def cli(*args: str) -> str:
    """Run the public ``cover-id`` CLI (the held-out measurement path); its stdout."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"cover-id {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def cli_identify(photos: list[Path], index: Path, chunk: int = 200) -> list[dict]:
    """``cover-id identify --json`` over many photos, one result dict per photo."""
    import json

    out: list[dict] = []
    for i in range(0, len(photos), chunk):
        text = cli("identify", *map(str, photos[i : i + chunk]), "--index", str(index), "--json")
        out += [json.loads(line) for line in text.splitlines() if line.strip()]
    return out
