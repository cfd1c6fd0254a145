"""Building an index: catalog -> hashes -> features + vectors -> atomic save.

Re-runs are incremental: a reference whose file hash is unchanged keeps its
vector and keypoints; new and changed files are embedded; deleted ones are
dropped. ``rebuild=True`` re-embeds everything (and refits the local codebook).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cover_id.index.catalog import Reference, Skipped, load_metadata, scan_folder
from cover_id.errors import CoverIdError, ImageError

REF_MAX_SIDE = 1024  # references are decoded at most this large


@dataclass
class BuildReport:
    out: Path
    encoder: str
    indexed: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    notice: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def load_catalog(refs: Path | None, metadata: Path | None) -> tuple[list[Reference], list[Skipped], Path]:
    """References from a folder or a JSONL catalog (exactly one of them)."""
    if (refs is None) == (metadata is None):
        raise CoverIdError("give exactly one of --refs DIR or --metadata catalog.jsonl")
    if metadata is not None:
        return load_metadata(metadata)
    assert refs is not None
    return scan_folder(refs), [], Path(refs)


def _hash_all(refs: list[Reference], skipped: list[Skipped], show: bool) -> list[tuple[Reference, str]]:
    from cover_id.imageio import file_sha256
    from cover_id.progress import progress

    out = []
    with progress(len(refs), "hashing", show) as advance:
        for ref in refs:
            try:
                if not ref.path.is_file():
                    skipped.append(Skipped(ref.filename, "file not found"))
                elif ref.path.stat().st_size == 0:
                    skipped.append(Skipped(ref.filename, "empty file (0 bytes)"))
                else:
                    out.append((ref, file_sha256(ref.path)))
            except OSError as exc:
                skipped.append(Skipped(ref.filename, f"cannot be read ({exc.strerror})"))
            advance()
    return out


def build_index(
    out: Path,
    refs: Path | None = None,
    metadata: Path | None = None,
    settings: dict[str, Any] | None = None,
    projection_path: Path | None = None,
    rebuild: bool = False,
    show_progress: bool = True,
) -> BuildReport:
    """Create or update the index at ``out``; returns what happened."""
    import numpy as np

    from cover_id.config import DEFAULTS
    from cover_id.encoders import create_encoder, resolve_encoder_name
    from cover_id.features import extract_features
    from cover_id.imageio import read_image
    from cover_id.index.store import IndexStore
    from cover_id.progress import progress
    from cover_id.projection import load_projection
    from cover_id.runtime import set_threads

    s = {**DEFAULTS, **(settings or {})}
    set_threads(s.get("threads"))
    t0 = time.perf_counter()
    catalog, skipped, root = load_catalog(refs, metadata)
    if not catalog and not skipped:
        raise CoverIdError(f"no images found in {refs or metadata} (looked for jpg, jpeg, png, webp, bmp, tif)")

    old: IndexStore | None = None
    out = Path(out)
    if out.exists() and not rebuild:
        old = IndexStore.open(out)

    name = s["encoder"]
    notice = None
    if name == "auto" and old is not None:
        name = old.encoder_spec["name"]  # keep what the index was built with
    name, notice = resolve_encoder_name(name, s["model"], s["pretrained"])
    encoder = create_encoder(
        name, model=s["model"], pretrained=s["pretrained"], device=s["device"], batch_size=s["batch_size"]
    )
    projection = load_projection(projection_path) if projection_path else None
    if projection is None and old is not None and old.projection is not None and not rebuild:
        projection = old.projection  # an incremental run keeps the head the index has
    fittable = hasattr(encoder, "fit_features")
    if old is not None and old.encoder_state and fittable:
        encoder.load_state(old.encoder_state)  # type: ignore[attr-defined]
    spec = encoder.spec()
    if old is not None:
        old.check_compatible(spec, projection, check_head=False)  # a new head re-projects stored raw vectors
    if projection is not None:
        _check_head(projection, spec, encoder.dim, check_state=False)  # fail before the long work

    report = BuildReport(out=out, encoder=name, notice=notice, skipped=list(skipped))
    hashed = _hash_all(catalog, report.skipped, show_progress)

    first_by_hash: dict[str, str] = {}
    for ref, digest in hashed:
        if digest in first_by_hash:
            report.duplicates.append((ref.filename, first_by_hash[digest]))
        else:
            first_by_hash[digest] = ref.filename

    old_rows: dict[str, int] = {}
    if old is not None:
        files = old.manifest.get("files", {})
        for i, rec in enumerate(old.records):
            if files.get(rec["filename"]) is not None:
                old_rows[rec["filename"]] = i
    reuse: dict[int, int] = {}  # position in hashed -> old row
    todo: list[int] = []
    for pos, (ref, digest) in enumerate(hashed):
        row = old_rows.get(ref.filename)
        if old is not None and row is not None and old.manifest["files"].get(ref.filename) == digest:
            reuse[pos] = row
        else:
            todo.append(pos)
    if old is not None:
        kept = {ref.filename for ref, _ in hashed}
        report.removed = sum(1 for f in old_rows if f not in kept)

    # Decode + features (+ vectors for encoders that need no fitting), streamed in batches.
    t_embed = time.perf_counter()
    new_feats: dict[int, Any] = {}
    new_vecs: dict[int, np.ndarray] = {}
    batch_size = max(1, int(s["batch_size"]))
    with progress(len(todo), f"embedding ({name})", show_progress) as advance:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            images, ok = [], []
            for pos in chunk:
                ref = hashed[pos][0]
                try:
                    img = read_image(ref.path, max_side=REF_MAX_SIDE)
                except ImageError as exc:
                    report.skipped.append(Skipped(ref.filename, str(exc).split(": ", 1)[-1]))
                    continue
                new_feats[pos] = extract_features(img)
                images.append(img)
                ok.append(pos)
            if images and not fittable:
                for pos, vec in zip(ok, encoder.encode_images(images)):
                    new_vecs[pos] = vec
            advance(len(chunk))
    if fittable:
        if not encoder.is_fitted():  # type: ignore[attr-defined]
            all_feats = [new_feats[p] for p in sorted(new_feats)]
            if old is not None:
                all_feats += [old.features[r] for r in reuse.values()]
            if not all_feats:
                raise CoverIdError("no readable reference images: nothing to index")
            encoder.fit_features(all_feats)  # type: ignore[attr-defined]
            spec = encoder.spec()
        order = sorted(new_feats)
        if order:
            vecs = encoder.encode_features([new_feats[p] for p in order])  # type: ignore[attr-defined]
            new_vecs.update(zip(order, vecs))
    if projection is not None:
        _check_head(projection, spec, encoder.dim, check_state=True)
    report.embed_seconds = time.perf_counter() - t_embed
    report.embedded = len(new_vecs)
    report.reused = len(reuse)

    # Assemble rows in catalog order.
    records, vectors, features, files = [], [], [], {}
    for pos, (ref, digest) in enumerate(hashed):
        if pos in reuse:
            assert old is not None
            vec, feat = old.raw_embeddings[reuse[pos]], old.features[reuse[pos]]
        elif pos in new_vecs:
            vec, feat = new_vecs[pos], new_feats[pos]
        else:
            continue  # unreadable: already reported as skipped
        records.append(ref.record())
        vectors.append(vec)
        features.append(feat)
        files[ref.filename] = digest
    if not records:
        raise CoverIdError("no readable reference images: nothing to index (see the skipped list)")

    dim = projection.out_dim if projection else encoder.dim
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest: dict[str, Any] = {
        "format": 1,
        "created": old.manifest.get("created", now) if old else now,
        "encoder": {**spec, "dim": encoder.dim},
        "dim": dim,
        "projection": (
            {"fingerprint": projection.fingerprint, "in_dim": projection.in_dim, "out_dim": projection.out_dim}
            if projection
            else None
        ),
        "refs_root": str(Path(root).resolve()),
        "source": {"type": "metadata" if metadata else "folder", "path": str(Path(metadata or refs).resolve())},  # type: ignore[arg-type]
        "files": files,
        "skipped": [{"filename": k.filename, "reason": k.reason} for k in report.skipped],
        "duplicates": [{"filename": a, "same_as": b} for a, b in report.duplicates],
        "calibration": old.manifest.get("calibration") if old else None,
    }
    old_head = (old.manifest.get("projection") or {}).get("fingerprint") if old else None
    if old is not None and (report.embedded or old_head != (projection.fingerprint if projection else None)):
        manifest["calibration"] = None  # thresholds were measured on other vectors
    state = encoder.state() if fittable else {}  # type: ignore[attr-defined]
    raw = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), encoder.dim)
    store = IndexStore(
        manifest=manifest,
        embeddings=projection.apply(raw) if projection else raw,
        records=records,
        features=features,
        encoder_state=state,
        projection=projection,
        raw=raw if projection else None,
    )
    from cover_id.index.store import VOTER_MAX

    store.manifest["voter"] = store.size <= VOTER_MAX
    if store.has_voter:
        with progress(1, "vote index", show_progress) as advance:
            store.voter()  # descriptor shortlister over every reference keypoint
            advance()
    report.seconds = time.perf_counter() - t0
    store.manifest["build_seconds"] = round(report.seconds, 3)
    store.save(out)
    report.indexed = store.size
    return report


def _check_head(projection: Any, spec: dict[str, Any], dim: int, check_state: bool) -> None:
    """A head only makes sense on the encoder (and learned codebook) it was trained on."""
    want = projection.encoder
    same_state = not check_state or want.get("fingerprint") in (None, spec.get("fingerprint"))
    if (want.get("name"), want.get("params")) != (spec.get("name"), spec.get("params")) or projection.in_dim != dim or not same_state:
        from cover_id.index.store import describe_spec

        raise CoverIdError(
            f"projection head was trained for encoder {describe_spec(want)} ({projection.in_dim}-d), "
            f"not {describe_spec(spec)} ({dim}-d); train one with `cover-id train` for this encoder"
        )
