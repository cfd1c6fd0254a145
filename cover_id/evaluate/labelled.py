"""Labelled photos: the ``photo,reference`` CSV and identifying every photo in it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError
from cover_id.evaluate.probe import Probe, Prober

if TYPE_CHECKING:
    from cover_id.index.store import IndexStore


def read_truth(csv_path: Path, store: IndexStore) -> list[tuple[Path, int | None, str]]:
    """(photo path, reference row or None, reference as written) for each CSV row."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CoverIdError(f"queries file not found: {csv_path}")
    base = csv_path.resolve().parent
    by_file = {r["filename"]: i for i, r in enumerate(store.records)}
    by_id = {r["id"]: i for i, r in enumerate(store.records)}
    by_path: dict[str, int] = {}
    by_base: dict[str, list[int]] = {}
    for i, r in enumerate(store.records):
        by_path[str(store.image_path(i).resolve())] = i
        by_base.setdefault(Path(r["filename"]).name, []).append(i)
    out: list[tuple[Path, int | None, str]] = []
    unknown: list[str] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "photo" not in cols or "reference" not in cols:
            raise CoverIdError(f"{csv_path}: needs a header with columns photo,reference (got {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            photo = (row.get(cols["photo"]) or "").strip()
            ref = (row.get(cols["reference"]) or "").strip()
            if not photo:
                continue
            p = Path(photo)
            p = p if p.is_absolute() else base / p
            if not ref:
                out.append((p, None, ""))
                continue
            rp = Path(ref)
            cands = [str((rp if rp.is_absolute() else base / rp).resolve())]
            ref_row = by_path.get(cands[0])
            if ref_row is None:
                ref_row = by_file.get(ref.replace("\\", "/"), by_id.get(ref))
            if ref_row is None and len(by_base.get(rp.name, [])) == 1:
                ref_row = by_base[rp.name][0]
            if ref_row is None:
                unknown.append(f"line {line}: {ref}")
            out.append((p, ref_row, ref))
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise CoverIdError(
            f"{csv_path}: references not in the index: {'; '.join(unknown[:5])}{more} "
            "(give the filename relative to the refs folder or the id; leave it empty for 'not in the collection')"
        )
    if not out:
        raise CoverIdError(f"{csv_path}: no photos listed")
    return out


def label_photos(
    prober: Prober, truth: list[tuple[Path, int | None, str]], show_progress: bool = False
) -> tuple[list[Probe], list[dict[str, Any]]]:
    """Identify every labelled photo; unreadable ones are returned as errors."""
    from cover_id.progress import progress

    probes, errors = [], []
    with progress(len(truth), "labelled photos", show_progress) as advance:
        for path, i, _ in truth:
            try:
                probes.append(prober.probe(str(path), i, str(path), kind="photo", keep_photo=True))
            except CoverIdError as exc:
                errors.append({"input": str(path), "error": str(exc)})
            advance()
    return probes, errors
