"""The reference catalog: a folder of images, or a ``metadata.jsonl`` file.

Folder: every image below it is one item; its filename is its label
(``LOCH-JP001_dark_magician_pscr.jpg`` -> name "Dark Magician", set_code
"LOCH-JP001", rarity "PScR"). Catalog: one JSON object a line with ``id``,
``name``, ``cover_id``, ``cover_url``, ``local_filename``; every other field
is kept and returned with matches.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError
from cover_id.imageio import is_image_path

RARITIES = {
    "pscr": "PScR", "scr": "ScR", "ur": "UR", "sr": "SR", "op": "OP",
    "utr": "UtR", "cr": "CR", "ea": "EA", "gmr": "GMR",
}  # fmt: skip
_SET_CODE = re.compile(r"^([A-Za-z0-9]{2,6}-[A-Za-z]{0,3}\d{2,4}[A-Za-z]?)[_ ]+(.+)$")
_RARITY = re.compile(r"^(.+?)[_ ]+(" + "|".join(RARITIES) + r")$", re.IGNORECASE)


@dataclass
class Reference:
    """One item of the collection."""

    id: str
    name: str
    filename: str  # relative to the refs root, POSIX separators (absolute if outside it)
    path: Path  # where the image is read from
    fields: dict[str, Any] = field(default_factory=dict)  # set_code, rarity, catalog fields

    def record(self) -> dict[str, Any]:
        """The JSON-able description returned with matches."""
        return {"id": self.id, "name": self.name, "filename": self.filename, **self.fields}


@dataclass
class Skipped:
    filename: str
    reason: str


def _title(words: str) -> str:
    """Capitalise each word's first letter; keep the rest (``NYPd`` stays ``NYPd``)."""
    return " ".join(w[:1].upper() + w[1:] for w in words.split())


def parse_label(stem: str) -> dict[str, str]:
    """Name, and optional set code and rarity, from a filename stem."""
    out: dict[str, str] = {}
    text = stem
    m = _SET_CODE.match(text)
    if m:
        out["set_code"] = m.group(1).upper()
        text = m.group(2)
    m = _RARITY.match(text)
    if m:
        out["rarity"] = RARITIES[m.group(2).lower()]
        text = m.group(1)
    out["name"] = _title(text.replace("_", " ")) or stem
    return out


def slug_id(filename: str) -> str:
    """A stable, URL-safe id from a relative filename (folders joined by ``--``)."""
    parts = filename.split("/")
    parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    slugs = [re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-") for part in parts]
    return "--".join(s for s in slugs if s) or "ref"


def scan_folder(root: Path) -> list[Reference]:
    """Every image below ``root``, sorted by relative path, labelled by filename."""
    root = Path(root)
    if not root.exists():
        raise CoverIdError(f"references folder not found: {root}")
    if not root.is_dir():
        raise CoverIdError(f"--refs must be a folder of images: {root}")
    refs: list[Reference] = []
    seen: dict[str, int] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and is_image_path(p)):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        label = parse_label(path.stem)
        ref_id = slug_id(rel)
        if ref_id in seen:  # a.jpg and a.png: keep both, distinguish by extension
            ref_id = f"{ref_id}-{path.suffix.lower().lstrip('.')}"
        seen[ref_id] = 1
        fields = {k: v for k, v in label.items() if k != "name"}
        refs.append(Reference(id=ref_id, name=label["name"], filename=rel, path=path, fields=fields))
    return refs


def _resolve(local: str, catalog_dir: Path) -> Path:
    p = Path(local).expanduser()
    if p.is_absolute():
        return p
    candidates = [catalog_dir / p]
    if os.environ.get("COVERS_ROOT"):
        candidates.append(Path(os.environ["COVERS_ROOT"]) / p)
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def load_metadata(catalog: Path) -> tuple[list[Reference], list[Skipped], Path]:
    """Read a JSON Lines catalog. Returns (references, skipped lines, refs root)."""
    catalog = Path(catalog)
    if not catalog.is_file():
        raise CoverIdError(f"catalog not found: {catalog}")
    root = Path(os.environ["COVERS_ROOT"]) if os.environ.get("COVERS_ROOT") else catalog.parent
    refs: list[Reference] = []
    skipped: list[Skipped] = []
    ids: set[str] = set()
    with open(catalog, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{catalog.name}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(where, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(where, "not a JSON object"))
                continue
            local = obj.get("local_filename")
            if not local:
                skipped.append(Skipped(where, "no local_filename"))
                continue
            path = _resolve(str(local), catalog.parent)
            try:
                filename = path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                filename = path.as_posix()
            ref_id = str(obj.get("id") or obj.get("cover_id") or slug_id(filename))
            if ref_id in ids:
                skipped.append(Skipped(where, f"duplicate id '{ref_id}'"))
                continue
            ids.add(ref_id)
            name = str(obj.get("name") or parse_label(path.stem)["name"])
            fields = {k: v for k, v in obj.items() if k not in ("id", "name")}
            refs.append(Reference(id=ref_id, name=name, filename=filename, path=path, fields=fields))
    return refs, skipped, root
