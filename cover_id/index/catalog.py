"""The reference catalog: a folder of images, or a ``metadata.jsonl`` file.

Folder: every image below it is one item; its filename is its label
(``LOCH-JP001_dark_magician_pscr.jpg`` -> name "Dark Magician", set_code
"LOCH-JP001", rarity "PScR"). A folder holding an ``item.json`` is one item
with several images (``refs/<item>/*.jpg``; the folder name is the label, the
file's object adds fields). Catalog: one JSON object a line with ``id``,
``name``, ``cover_id``, ``cover_url``, ``local_filename`` (and optionally
``images``: more images of the same item); every other field is kept and
returned with matches.

Several images of one item become one reference each (a *view*): the first is
the item's primary view (its id is the item's id), every view's record names
the item in ``item``. See :mod:`cover_id.identify.items`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError
from cover_id.imageio import is_image_path

RARITIES = {
    "pscr": "PScR",
    "scr": "ScR",
    "ur": "UR",
    "sr": "SR",
    "op": "OP",
    "utr": "UtR",
    "cr": "CR",
    "ea": "EA",
    "gmr": "GMR",
}
_SET_CODE = re.compile(r"^([A-Za-z0-9]{2,6}-[A-Za-z]{0,3}\d{2,4}[A-Za-z]?)[_ ]+(.+)$")
_RARITY = re.compile(r"^(.+?)[_ ]+(" + "|".join(RARITIES) + r")$", re.IGNORECASE)
ITEM_FILE = "item.json"  # marks a folder as one item with several images


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


def walk_images(root: Path, utf8_names: bool = True) -> tuple[list[Path], list[Skipped]]:
    """Image files below ``root`` (sorted, hidden names left out) and what could not be looked at, with why.

    Links to folders are followed once; a loop, a broken link, an unreadable
    folder, a pipe or device named like an image and a name that is not UTF-8
    are each one skipped entry (``filename`` relative to ``root``, printable),
    never the end of the walk. ``utf8_names=False`` keeps names that are not
    UTF-8 (identify can read them; an index cannot store them).
    """
    from cover_id.imageio import display_name, is_valid_name

    root = Path(root)
    found: list[Path] = []
    skipped: list[Skipped] = []
    try:
        visited = {_inode(root.stat())}
    except OSError as exc:
        raise CoverIdError(f"cannot read folder {display_name(root)} ({exc.strerror})") from None
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            where = display_name(folder.relative_to(root).as_posix()) if folder != root else "."
            skipped.append(Skipped(where, f"folder cannot be read ({exc.strerror or 'unreadable'})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            rel = display_name(path.relative_to(root).as_posix())
            try:
                st = os.stat(path)  # follows links
            except FileNotFoundError:
                skipped.append(Skipped(rel, "broken link (its target does not exist)"))
                continue
            except OSError as exc:
                reason = "symbolic link loop" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
                skipped.append(Skipped(rel, reason))
                continue
            if stat.S_ISDIR(st.st_mode):
                if utf8_names and not is_valid_name(entry.name):
                    skipped.append(Skipped(rel, "folder name is not valid UTF-8 (rename it)"))
                elif _inode(st) in visited:
                    skipped.append(Skipped(rel, "link to a folder already scanned (a link loop?)"))
                else:
                    visited.add(_inode(st))
                    stack.append(path)
            elif is_image_path(path):
                if not stat.S_ISREG(st.st_mode):
                    skipped.append(Skipped(rel, "not a regular file (a pipe, socket or device)"))
                elif utf8_names and not is_valid_name(entry.name):
                    skipped.append(Skipped(rel, "file name is not valid UTF-8 (rename it)"))
                else:
                    found.append(path)
    found.sort(key=lambda p: p.relative_to(root).parts)
    skipped.sort(key=lambda s: s.filename)
    return found, skipped


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def scan_folder_report(root: Path) -> tuple[list[Reference], list[Skipped]]:
    """Every image below ``root``, sorted by relative path, labelled by filename; and what was skipped."""
    root = Path(root)
    if not root.exists():
        raise CoverIdError(f"references folder not found: {root}")
    if not root.is_dir():
        raise CoverIdError(f"--refs must be a folder of images: {root}")
    paths, skipped = walk_images(root)
    refs: list[Reference] = []
    seen: dict[str, int] = {}
    items: dict[Path, tuple[str, str, dict[str, Any]] | None] = {}  # item folder -> (id, name, fields)
    started: set[str] = set()
    for path in paths:
        rel = path.relative_to(root).as_posix()
        folder = _item_folder(path.parent, root, items, skipped)
        if folder is not None:
            item_id, name, fields = items[folder]  # type: ignore[misc]
            ref_id = slug_id(rel) if item_id in started else item_id  # the first image is the primary view
            started.add(item_id)
            fields = {**fields, "item": item_id}
        else:
            label = parse_label(path.stem)
            ref_id, name = slug_id(rel), label["name"]
            fields = {k: v for k, v in label.items() if k != "name"}
        if ref_id in seen:  # a.jpg and a.png: keep both, distinguish by extension
            ref_id = f"{ref_id}-{path.suffix.lower().lstrip('.')}"
        seen[ref_id] = 1
        refs.append(Reference(id=ref_id, name=name, filename=rel, path=path, fields=fields))
    return refs, skipped


def _item_folder(
    folder: Path, root: Path, items: "dict[Path, tuple[str, str, dict[str, Any]] | None]", skipped: list[Skipped]
) -> Path | None:
    """The nearest folder from ``folder`` up to (not including) ``root`` that holds an ``item.json``.

    ``items`` caches every folder looked at: its (item id, name, fields), or None without a marker.
    """
    while folder != root and root in folder.parents:
        if folder not in items:
            items[folder] = _read_item(folder, root, skipped)
        if items[folder] is not None:
            return folder
        folder = folder.parent
    return None


def _read_item(folder: Path, root: Path, skipped: list[Skipped]) -> tuple[str, str, dict[str, Any]] | None:
    """(id, name, fields) of an item folder, or None when ``folder`` has no ``item.json``."""
    marker = folder / ITEM_FILE
    if not marker.is_file():
        return None
    rel = folder.relative_to(root).as_posix()
    label = parse_label(folder.name)
    fields: dict[str, Any] = {k: v for k, v in label.items() if k != "name"}
    try:
        extra = json.loads(marker.read_text(encoding="utf-8") or "{}")
        if not isinstance(extra, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        skipped.append(Skipped(f"{rel}/{ITEM_FILE}", f"its fields are ignored ({str(exc).splitlines()[0][:80]})"))
        extra = {}
    item_id = str(extra.get("id") or "--".join(slug_id(part + ".x") for part in rel.split("/")))
    name = str(extra.get("name") or label["name"])
    fields.update({k: v for k, v in extra.items() if k not in ("id", "name", "filename", "item")})
    return item_id, name, fields


def scan_folder(root: Path) -> list[Reference]:
    """Every image below ``root``, sorted by relative path, labelled by filename."""
    return scan_folder_report(root)[0]


def _resolve(local: str, catalog_dir: Path) -> Path:
    p = Path(local).expanduser()
    if p.is_absolute():
        return p
    candidates = [catalog_dir / p]
    if os.environ.get("COVERS_ROOT"):
        candidates.append(Path(os.environ["COVERS_ROOT"]) / p)
    for c in candidates:
        try:
            if c.exists():
                return c
        except (OSError, ValueError):  # a name too long, or with a NUL byte: reported when it is read
            continue
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
    with open(catalog, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{catalog.name}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                skipped.append(Skipped(where, "not valid UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(where, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(where, "not a JSON object"))
                continue
            images = obj.get("images")
            if images is not None and not (isinstance(images, list) and all(isinstance(x, str) for x in images)):
                skipped.append(Skipped(where, "images must be a list of file names"))
                continue
            images = [x for x in (images or []) if x]
            local = obj.get("local_filename") or (images[0] if images else None)
            if not local:
                skipped.append(Skipped(where, "no local_filename"))
                continue
            path, filename = _locate(str(local), catalog.parent, root)
            ref_id = str(obj.get("id") or obj.get("cover_id") or slug_id(filename))
            if ref_id in ids:
                skipped.append(Skipped(where, f"duplicate id '{ref_id}'"))
                continue
            ids.add(ref_id)
            name = str(obj.get("name") or parse_label(path.stem)["name"])
            fields = {k: v for k, v in obj.items() if k not in ("id", "name")}
            views: list[tuple[Path, str]] = []
            for extra in images:
                v_path, v_name = _locate(extra, catalog.parent, root)
                if v_name != filename and v_name not in (v[1] for v in views):
                    views.append((v_path, v_name))
            if views:
                fields["item"] = ref_id
            refs.append(Reference(id=ref_id, name=name, filename=filename, path=path, fields=fields))
            view_fields = {k: v for k, v in fields.items() if k not in ("images", "local_filename")}
            for v_path, v_name in views:
                view_id = f"{ref_id}--{slug_id(Path(v_name).name)}"
                while view_id in ids:
                    view_id += "-2"
                ids.add(view_id)
                refs.append(Reference(id=view_id, name=name, filename=v_name, path=v_path, fields=dict(view_fields)))
    return refs, skipped, root


def _locate(local: str, catalog_dir: Path, root: Path) -> tuple[Path, str]:
    """Where a catalog's file name is read from, and its name relative to the refs root."""
    path = _resolve(local, catalog_dir)
    try:
        return path, path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # outside the root, or a link loop
        return path, path.as_posix()
