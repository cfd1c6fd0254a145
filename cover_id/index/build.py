"""Building an index: catalog -> features -> vectors -> search structures, streamed.

A fresh build (no index yet, ``--rebuild``, or a format-1 folder) writes into
``.<out>.building/`` beside the index, committing every batch of references to
SQLite and the segment files; an interrupted build (Ctrl-C, kill -9) resumes
there on the next run. Only when everything is written is the folder swapped
in. Phases: (1) decode + RootSIFT (+ vectors for encoders that need no
fitting), (2) fit the local codebook on a bounded sample of descriptors,
(3) VLAD vectors, (4) compact candidate index and keypoint-vote index.

A run on an existing index is incremental: a file whose size and mtime (or,
failing that, content hash) are unchanged is left alone; new and changed files
are appended and deleted ones tombstoned, in transactions on the live index:
the work is proportional to what changed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError, ImageError
from cover_id.index.catalog import Reference, Skipped, load_metadata, scan_folder_report

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features
    from cover_id.index.disk import Disk
    from cover_id.index.store import IndexStore

REF_MAX_SIDE = 1024  # references are decoded at most this large
BATCH = 32  # references per committed transaction
FIT_ALL_BELOW = 2_000_000  # descriptors: below, the codebook sees all of them (as before)
VOTER_ALL_BELOW = 4_000_000  # descriptors: below, the vote index is trained on all of them (as before)
VOTER_BATCH = 512  # references read at a time when the vote index is filled
AUTO_WORKERS_FROM = 8  # images: below, extraction runs inline (threads would not pay for themselves)
VOCAB_SAMPLE_REFS = 2000  # references the visual-word vocabulary is learned from


@dataclass
class BuildReport:
    out: Path
    encoder: str
    indexed: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    resumed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    notice: str | None = None
    compacted: bool = False
    relearned: bool = False  # the compact candidate index was re-learned from the stored vectors

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
    found, skipped = scan_folder_report(refs)  # broken links, loops, unreadable folders, non-UTF-8 names
    return found, skipped, Path(refs)


def _stat(ref: Reference, skipped: list[Skipped]) -> tuple[int, int] | None:
    try:
        st = ref.path.stat()
    except FileNotFoundError:
        skipped.append(Skipped(ref.filename, "file not found"))
        return None
    except OSError as exc:
        skipped.append(Skipped(ref.filename, f"cannot be read ({exc.strerror})"))
        return None
    if not ref.path.is_file():
        skipped.append(Skipped(ref.filename, "file not found"))
        return None
    if st.st_size == 0:
        skipped.append(Skipped(ref.filename, "empty file (0 bytes)"))
        return None
    return int(st.st_size), int(st.st_mtime_ns)


def _sha(ref: Reference, skipped: list[Skipped]) -> str | None:
    from cover_id.imageio import file_sha256

    try:
        return file_sha256(ref.path)
    except OSError as exc:
        skipped.append(Skipped(ref.filename, f"cannot be read ({exc.strerror})"))
        return None


# ---- feature extraction (in this process, local worker processes, or Ray tasks) -------------
def extract_one(path: str) -> "tuple[Features | None, str | None]":
    """Decode one reference and extract its RootSIFT keypoints; (None, reason) if unreadable."""
    from cover_id.features import extract_features
    from cover_id.imageio import read_image

    try:
        img = read_image(Path(path), max_side=REF_MAX_SIDE)
    except ImageError as exc:
        return None, str(exc).split(": ", 1)[-1]
    return extract_features(img), None


def _extract_batch(paths: list[str]) -> "list[tuple[Features | None, str | None]]":
    """One batch on a Ray worker: one thread per process (Ray runs one task per core)."""
    from cover_id.runtime import set_threads

    set_threads(1)
    return [extract_one(p) for p in paths]


def auto_workers(n_images: int, requested: int | None = None, threads: int | None = None) -> int:
    """Extraction threads: ``requested`` if given (>= 1), else one per thread of the budget
    (``--threads``, default: every usable core), 1 for a handful of images."""
    from cover_id.runtime import thread_count

    if requested is not None and requested > 0:
        return int(requested)
    return 1 if n_images < AUTO_WORKERS_FROM else thread_count(threads)


class Extractor:
    """Maps :func:`extract_one` over batches: inline, on N threads of this process, or on a Ray cluster.

    Threads, not processes: RootSIFT and decoding run in OpenCV with the GIL released,
    so N threads use N cores without start-up or pickling costs (measured faster than a
    spawned process pool). While they run, OpenCV gets one thread each (no
    oversubscription); the caller's budget is restored afterwards for the FAISS phases.
    """

    def __init__(self, workers: int = 1, ray_address: str | None = None, threads: int | None = None) -> None:
        self.workers = max(1, int(workers or 1))
        self.ray_address = ray_address
        self.threads = threads  # the process's thread budget (``--threads``), shared out while extracting
        self._threads: Any = None
        self._ray: Any = None
        self._started_ray = False

    def __enter__(self) -> "Extractor":
        if self.ray_address is not None:
            import ray

            if not ray.is_initialized():
                addr = None if self.ray_address in ("", "local") else self.ray_address
                kw: dict[str, Any] = {"address": addr, "include_dashboard": False, "log_to_driver": False}
                if addr is None and self.workers > 1:
                    kw["num_cpus"] = self.workers
                ray.init(**kw)
                self._started_ray = True
            self._ray = ray.remote(_extract_batch)
        elif self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            from cover_id.runtime import set_threads, thread_count

            set_threads(max(1, thread_count(self.threads) // self.workers))
            self._threads = ThreadPoolExecutor(self.workers, "cover-id-extract")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            from cover_id.runtime import set_threads

            set_threads(self.threads)
        if self._started_ray:
            import ray

            ray.shutdown()

    def map(self, paths: list[str], chunk: int) -> "Iterator[list[tuple[Features | None, str | None]]]":
        """Results per batch of ``chunk`` paths, in order."""
        batches = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
        if self._ray is not None:
            import ray

            window = max(2, 2 * int(ray.cluster_resources().get("CPU", 2)))
            refs = [self._ray.remote(b) for b in batches[:window]]
            nxt = window
            for _ in range(len(batches)):
                out = ray.get(refs.pop(0))
                if nxt < len(batches):
                    refs.append(self._ray.remote(batches[nxt]))
                    nxt += 1
                yield out
        elif self._threads is not None:
            # Two batches in flight: the threads extract the next one while this one is written.
            pending = [[self._threads.submit(_extract_path, p) for p in b] for b in batches[:2]]
            for nxt in range(2, len(batches) + 2):
                done = [f.result() for f in pending.pop(0)]
                if nxt < len(batches):
                    pending.append([self._threads.submit(_extract_path, p) for p in batches[nxt]])
                yield done
        else:
            for b in batches:
                yield [extract_one(p) for p in b]


def _extract_path(path: str) -> "tuple[Features | None, str | None]":
    return extract_one(path)  # looked up at call time, so a patched extract_one is used


# ---- writing a store folder ------------------------------------------------------------------
def _build_search(disk: "Disk", manifest: dict[str, Any], projection: Any, show: bool) -> None:
    """Compact candidate index + keypoint votes over every slot, saved as checkpoints."""
    import numpy as np

    from cover_id.index.store import WORDS_DIR, pick_voter
    from cover_id.progress import progress

    build_global(disk, manifest, projection, show)
    n = disk.next_slot()
    live = disk.live_slots()
    all_slots = np.arange(n, dtype=np.int64)
    kind = pick_voter(len(live), (manifest.get("settings") or {}).get("vote_index"))
    manifest["voter"] = bool(n)
    manifest["voter_kind"] = kind
    if n and kind == "nn":
        with progress(1, "vote index", show) as advance:
            voter = _fit_voter(disk, all_slots)
            voter.save(str(disk.path / "voter.faiss"))  # the folder is published as a whole afterwards
            manifest["voter_covered"] = int(n)
            advance()
    elif n:
        from cover_id.index.vote import WordVoter, vocabulary_for

        total = int(disk.query("SELECT COALESCE(SUM(kp_n), 0) FROM refs WHERE deleted = 0")[0][0])
        coarse, fine, train = vocabulary_for(total)
        # enough references to draw the training descriptors from (~1,000 each)
        refs = max(VOCAB_SAMPLE_REFS, train // 800)
        with progress(1, "vote index (visual words)", show) as advance:
            vocab_sample = [disk.features(int(s)) for s in live[:: max(1, len(live) // refs)]]
            WordVoter(coarse, fine, train_samples=train).build(disk.path / WORDS_DIR, n, disk.features, vocab_sample)
            manifest["voter_covered"] = int(n)
            manifest["voter_vocabulary"] = {"coarse": coarse, "fine": fine, "descriptors": total}
            advance()


def build_global(disk: "Disk", manifest: dict[str, Any], projection: Any, show: bool) -> "Any":
    """Learn the compact basis from the stored vectors and index every slot; saves its checkpoint.

    Reads only the stored full vectors (no features are extracted), so it also upgrades
    the compact index of an existing folder. Sets ``manifest['search']``; returns the index.
    """
    import numpy as np

    from cover_id.index.search import (
        BASIS_SAMPLE,
        COMPACT_DIM,
        IVF_TRAIN,
        GlobalIndex,
        exact_for,
        learn_projection,
        pick_kind,
        save_global,
    )
    from cover_id.progress import progress

    n = disk.next_slot()
    all_slots = np.arange(n, dtype=np.int64)
    live = disk.live_slots()
    which = "emb" if projection is not None else "raw"
    dim = int(manifest["dim"])
    pick = live[np.linspace(0, len(live) - 1, min(BASIS_SAMPLE, len(live))).astype(np.int64)] if len(live) else live
    pick = np.unique(pick)
    sample = disk.vectors(pick, which) if len(pick) else np.zeros((0, dim), np.float32)
    exact = exact_for(len(live), dim > COMPACT_DIM)
    basis, scale = learn_projection(sample, COMPACT_DIM, whiten=not exact)
    kind = pick_kind(n, exact)
    proj = GlobalIndex(basis, None, 0, kind, scale)  # only its projection is used here
    train = proj.project(sample)
    if kind.startswith("ivf"):  # the lists need more points than the basis sample: read them a chunk at a time
        tpick = np.unique(live[np.linspace(0, len(live) - 1, min(IVF_TRAIN, len(live))).astype(np.int64)])
        train = np.concatenate([proj.project(c) for c in disk.all_vectors(tpick, which)])
    with progress(max(n, 1), "compact vectors", show) as advance:
        g = GlobalIndex.build(
            basis,
            dim,
            n,
            disk.all_vectors(all_slots, which) if n else iter(()),
            train,
            scale=scale,
            kind=kind,
            learned_from=len(pick),
            advance=advance,
        )
    manifest["search"] = g.describe()
    save_global(disk.path, g)
    return g


def _fit_voter(disk: "Disk", slots: "np.ndarray") -> Any:
    """The keypoint-vote index over ``slots``, reading at most VOTER_BATCH references at a time.

    Up to ``VOTER_ALL_BELOW`` descriptors the quantizer is trained on all of them (as it
    always was); beyond, on every k-th reference, and the references are added in batches.
    """
    import numpy as np

    from cover_id.index.vote import DescriptorVoter

    voter = DescriptorVoter()
    counts = dict(disk.query("SELECT slot, kp_n FROM refs"))
    total = int(sum(counts.get(int(s), 0) for s in slots))
    if total <= VOTER_ALL_BELOW:
        voter.fit([disk.features(int(s)) for s in slots])
        return voter
    step = int(np.ceil(total / VOTER_ALL_BELOW))
    voter.prepare(total, [disk.features(int(s)) for s in slots[::step]])
    for a in range(0, len(slots), VOTER_BATCH):
        voter.add([disk.features(int(s)) for s in slots[a : a + VOTER_BATCH]])
    return voter


def _save_arrays(folder: Path, encoder_state: dict[str, Any], projection: Any) -> None:
    from cover_id.store_io import save_npz

    if encoder_state:
        save_npz(folder / "encoder_state.npz", encoder_state)
    if projection is not None:
        save_npz(folder / "projection.npz", projection.to_arrays())


def write_store(folder: Path, store: "IndexStore", projection: Any = "same", show: bool = False) -> None:
    """Write ``store``'s live rows (and pending ones) into the empty ``folder`` (compaction, copies)."""
    import numpy as np

    from cover_id.index.disk import create_disk
    from cover_id.index.store import write_manifest

    proj = store.projection if projection == "same" else projection
    enc_dim = int(store.encoder_spec.get("dim") or store.dim)
    disk = create_disk(folder, enc_dim, proj.out_dim if proj else None)
    try:
        meta = {}
        if len(store._live):
            for slot, sha, size, mtime in store._disk.query(
                "SELECT slot, sha256, size, mtime_ns FROM refs WHERE deleted = 0"
            ):
                meta[slot] = (sha, (size, mtime) if size is not None else None)
        rows = list(range(store.size))
        n_live = len(store._live)
        for a in range(0, len(rows), 256):
            part = np.asarray(rows[a : a + 256], np.int64)
            raws = store.raw_embeddings[part]
            items = []
            for j, i in enumerate(part):
                rec, feats = store.records[int(i)], store.features[int(i)]
                if i < n_live:
                    sha, stat = meta.get(int(store._live[i]), (None, None))
                else:
                    sha, stat = store._pending[int(i) - n_live][3], None
                emb = proj.apply(raws[j : j + 1])[0] if proj is not None else None
                items.append((rec, raws[j], emb, feats, sha, stat))
            with disk.transaction() as db:
                disk.append(db, items)
        manifest = {k: v for k, v in store.manifest.items() if k not in ("files", "count", "updated")}
        if proj is not None:
            manifest["projection"] = {"fingerprint": proj.fingerprint, "in_dim": proj.in_dim, "out_dim": proj.out_dim}
            manifest["dim"] = proj.out_dim
        elif projection != "same":
            manifest["projection"] = None
            manifest["dim"] = enc_dim
        _save_arrays(folder, store.encoder_state, proj)
        _build_search(disk, manifest, proj, show)
        write_manifest(folder, manifest, store.size)
        disk.checkpoint()
    finally:
        disk.close()


# ---- the build -------------------------------------------------------------------------------
def _format_of(out: Path) -> int | None:
    try:
        return int(json.loads((out / "manifest.json").read_text()).get("format", 0))
    except (OSError, ValueError):
        return None


def build_index(
    out: Path,
    refs: Path | None = None,
    metadata: Path | None = None,
    settings: dict[str, Any] | None = None,
    projection_path: Path | None = None,
    rebuild: bool = False,
    show_progress: bool = True,
    workers: int | None = None,
    ray_address: str | None = None,
) -> BuildReport:
    """Create or update the index at ``out``; returns what happened.

    ``workers``: threads decoding and extracting features (default: one per usable core,
    inline for fewer than ``AUTO_WORKERS_FROM`` images); with ``ray_address``, the Ray CPUs to start.
    """
    from cover_id.config import DEFAULTS
    from cover_id.encoders import create_encoder, resolve_encoder_name
    from cover_id.index.store import IndexStore, pick_voter
    from cover_id.runtime import set_threads
    from cover_id.store_io import clean_stale
    from cover_id.training.projection import load_projection

    s = {**DEFAULTS, **(settings or {})}
    pick_voter(0, s.get("vote_index"))  # an unknown choice fails before any work
    set_threads(s.get("threads"))
    t0 = time.perf_counter()
    catalog, skipped, root = load_catalog(refs, metadata)
    if not catalog and not skipped:
        raise CoverIdError(f"no images found in {refs or metadata} (looked for jpg, jpeg, png, webp, bmp, tif)")

    out = Path(out)
    clean_stale(out)
    old: IndexStore | None = None
    notice = None
    old_calibration = None
    fmt = _format_of(out) if out.exists() else None
    if fmt is not None and fmt < 2:
        notice = f"{out} was a format-{fmt} index: rebuilt in format 2"
        try:
            old_calibration = json.loads((out / "manifest.json").read_text()).get("calibration")
        except (OSError, ValueError):
            pass
        rebuild = True
    elif out.exists() and not rebuild:
        old = IndexStore.open(out)

    name = s["encoder"]
    if name == "auto" and old is not None:
        name = old.encoder_spec["name"]  # keep what the index was built with
    name, note = resolve_encoder_name(name, s["model"], s["pretrained"])
    notice = notice or note
    encoder = create_encoder(
        name, model=s["model"], pretrained=s["pretrained"], device=s["device"], batch_size=s["batch_size"]
    )
    projection = load_projection(projection_path) if projection_path else None
    if projection is None and old is not None and old.projection is not None:
        projection = old.projection  # an incremental run keeps the head the index has
    if old is not None and old.encoder_state and encoder.fittable:
        encoder.load_state(old.encoder_state)
    spec = encoder.spec()
    if old is not None:
        old.check_compatible(spec, projection, check_head=False)  # a new head re-projects stored raw vectors
    if projection is not None:
        _check_head(projection, spec, encoder.dim, check_state=old is not None)

    report = BuildReport(out=out, encoder=name, notice=notice, skipped=list(skipped))
    job = _Job(s, encoder, projection, report, show_progress, workers, ray_address)
    if old is not None:
        head_old = (old.manifest.get("projection") or {}).get("fingerprint")
        head_new = projection.fingerprint if projection else None
        job.projection = old.projection  # appended rows use the head the index has; a new one is applied after
        _incremental(job, old, catalog, root, refs, metadata)
        if head_old != head_new:  # a new head: stored raw vectors are re-projected into a new folder
            old.manifest["calibration"] = None
            old._rewrite(out, projection)
        elif old.search_is_stale:  # compact vectors of an older kind: re-learned from the stored vectors
            old.relearn_search(show_progress)
            report.relearned = True
    else:
        _fresh(job, out, catalog, root, refs, metadata, old_calibration)
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class _Job:
    settings: dict[str, Any]
    encoder: Any
    projection: Any
    report: BuildReport
    show: bool
    workers: int | None
    ray_address: str | None
    t0: float = field(default_factory=time.perf_counter)

    @property
    def fittable(self) -> bool:
        return bool(self.encoder.fittable)

    def embed_batch(self, feats: "list[Features]", paths: list[Path]) -> "np.ndarray":
        """Raw vectors for a batch (features reused by the local encoder, images re-read for clip)."""
        from cover_id.encoders import encode_references
        from cover_id.imageio import read_image

        if self.encoder.supports_features:  # on this thread: the extraction threads have the other cores
            return encode_references(self.encoder, [], feats)
        return encode_references(self.encoder, [read_image(p, max_side=REF_MAX_SIDE) for p in paths])


def encode_split(encoder: Any, feats: "list[Features]", workers: int) -> "np.ndarray":
    """Vectors from stored features, the list split into ``workers`` parts encoded on threads.

    Each part is encoded exactly as a whole list would be (rows are independent), so
    the result does not depend on ``workers``; the numpy work releases the GIL.
    """
    import numpy as np

    from cover_id.encoders import encode_references

    if workers <= 1 or len(feats) < 2:
        return encode_references(encoder, [], feats)
    from concurrent.futures import ThreadPoolExecutor

    step = -(-len(feats) // workers)
    parts = [feats[i : i + step] for i in range(0, len(feats), step)]
    with ThreadPoolExecutor(len(parts), "cover-id-encode") as pool:
        return np.concatenate(list(pool.map(lambda part: encode_references(encoder, [], part), parts)))


def _duplicates(pairs: list[tuple[str, str | None]], report: BuildReport) -> None:
    first: dict[str, str] = {}
    for filename, sha in pairs:
        if sha is None:
            continue
        if sha in first:
            report.duplicates.append((filename, first[sha]))
        else:
            first[sha] = filename


def _base_manifest(
    job: _Job, root: Path, refs: Path | None, metadata: Path | None, created: str | None
) -> dict[str, Any]:
    from cover_id.config import index_record

    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    p = job.projection
    return {
        "created": created or now,
        "settings": index_record(job.settings),  # the preset and resolved settings it was built with
        "encoder": {**job.encoder.spec(), "dim": job.encoder.dim},
        "dim": p.out_dim if p else job.encoder.dim,
        "projection": {"fingerprint": p.fingerprint, "in_dim": p.in_dim, "out_dim": p.out_dim} if p else None,
        "refs_root": str(Path(root).resolve()),
        "source": {"type": "metadata" if metadata else "folder", "path": str(Path(metadata or refs).resolve())},  # type: ignore[arg-type]
        "skipped": [{"filename": k.filename, "reason": k.reason} for k in job.report.skipped],
        "duplicates": [{"filename": a, "same_as": b} for a, b in job.report.duplicates],
    }


def _fresh(
    job: _Job,
    out: Path,
    catalog: list[Reference],
    root: Path,
    refs: Path | None,
    metadata: Path | None,
    calibration: Any,
) -> None:
    """Build into ``.<out>.building`` (resuming what an interrupted run left), then swap it in."""

    from cover_id.index.disk import Disk, create_disk
    from cover_id.index.store import write_manifest
    from cover_id.progress import progress
    from cover_id.store_io import publish_dir

    report = job.report
    building = out.parent / f".{out.name}.building"
    want = {
        "encoder": job.encoder.spec()["name"],
        "params": job.encoder.spec().get("params"),
        "weights": job.encoder.spec().get("weights"),
        "projection": job.projection.fingerprint if job.projection else None,
    }
    plan = building / "build.json"
    if building.exists():
        try:
            same = json.loads(plan.read_text()) == want
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(building)
    enc_dim = job.encoder.dim
    emb_dim = job.projection.out_dim if job.projection else None
    if not building.exists():
        tmp = out.parent / f".{out.name}.building-new"
        shutil.rmtree(tmp, ignore_errors=True)
        create_disk(tmp, enc_dim, emb_dim).close()
        (tmp / "build.json").write_text(json.dumps(want))
        os.rename(tmp, building)
    disk = Disk(building, enc_dim, emb_dim)
    try:
        done = {fn: sha for fn, sha in disk.query("SELECT filename, sha256 FROM refs")}
        report.resumed = len(done)
        todo: list[tuple[Reference, str, tuple[int, int]]] = []
        pairs: list[tuple[str, str | None]] = []
        with progress(len(catalog), "hashing", job.show) as advance:
            for ref in catalog:
                st = _stat(ref, report.skipped)
                sha = _sha(ref, report.skipped) if st else None
                pairs.append((ref.filename, sha))
                if sha is not None and done.get(ref.filename) != sha:
                    todo.append((ref, sha, st))  # type: ignore[arg-type]
                advance()
        _duplicates(pairs, report)
        t_embed = time.perf_counter()
        _extract_and_append(job, disk, todo, vectors=not job.fittable)
        if job.fittable:
            _fit_codebook(job, disk, building)
            if job.projection is not None:
                _check_head(job.projection, job.encoder.spec(), job.encoder.dim, check_state=True)
            _encode_pending(job, disk)
        report.embed_seconds = time.perf_counter() - t_embed
        live = disk.live_slots()
        if not len(live):
            raise CoverIdError("no readable reference images: nothing to index (see the skipped list)")
        manifest = _base_manifest(job, root, refs, metadata, None)
        manifest["calibration"] = calibration
        _save_arrays(building, job.encoder.state() if job.fittable else {}, job.projection)
        _build_search(disk, manifest, job.projection, job.show)
        manifest["build_seconds"] = round(time.perf_counter() - job.t0, 3)
        write_manifest(building, manifest, len(live))
        report.indexed = len(live)
        report.embedded = len(live)
        disk.checkpoint()
    finally:
        disk.close()
    (building / "build.json").unlink(missing_ok=True)
    publish_dir(building, out)


def _extract_and_append(
    job: _Job,
    disk: "Disk",
    todo: "list[tuple[Reference, str, tuple[int, int]]]",
    vectors: bool,
    replace: dict[str, int] | None = None,
) -> None:
    """Phase 1: features (+ vectors when no fitting is needed), committed batch by batch."""
    from cover_id.progress import progress

    report = job.report
    replace = replace or {}
    rate_n = 0
    with job_extractor(job, len(todo)) as ex, progress(len(todo), f"features ({report.encoder})", job.show) as advance:
        paths = [str(ref.path) for ref, _, _ in todo]
        for b, results in enumerate(ex.map(paths, BATCH)):
            chunk = todo[b * BATCH : (b + 1) * BATCH]
            ok = []
            for (ref, sha, st), (feats, why) in zip(chunk, results):
                if feats is None:
                    report.skipped.append(Skipped(ref.filename, why or "unreadable"))
                else:
                    ok.append((ref, sha, st, feats))
            if ok:
                raws = job.embed_batch([o[3] for o in ok], [o[0].path for o in ok]) if vectors else [None] * len(ok)
                items = []
                for (ref, sha, st, feats), raw in zip(ok, raws):
                    emb = job.projection.apply(raw.reshape(1, -1))[0] if (raw is not None and job.projection) else None
                    items.append((ref.record(), raw, emb, feats, sha, st))
                with disk.transaction() as db:
                    gone = [replace[r.filename] for r, *_ in ok if r.filename in replace]
                    if gone:
                        db.executemany("UPDATE refs SET deleted = 1 WHERE slot = ?", [(g,) for g in gone])
                    disk.append(db, items)
                rate_n += len(ok)
            advance(len(chunk))
    report.embedded += rate_n


def job_extractor(job: _Job, n_images: int) -> Extractor:
    budget = job.settings.get("threads")
    workers = job.workers if job.ray_address is not None else auto_workers(n_images, job.workers, budget)
    return Extractor(workers or 1, job.ray_address, job.settings.get("threads"))


def _fit_codebook(job: _Job, disk: "Disk", folder: Path) -> None:
    """Phase 2: the local codebook from the stored descriptors (all of them below FIT_ALL_BELOW)."""
    import numpy as np

    from cover_id.features import Features
    from cover_id.store_io import save_npz

    state_path = folder / "encoder_state.npz"
    if state_path.is_file():
        with np.load(state_path, allow_pickle=False) as z:
            job.encoder.load_state({k: z[k] for k in z.files})
        return
    rows = disk.query("SELECT slot, kp_n FROM refs WHERE deleted = 0 ORDER BY slot")
    total = sum(n for _, n in rows)
    step = max(1, int(np.ceil(total / FIT_ALL_BELOW)))
    feats = []
    for slot, _ in rows:
        f = disk.features(slot)
        feats.append(f if step == 1 else Features(f.xy[::step], f.desc[::step], f.size))
    if not feats:
        raise CoverIdError("no readable reference images: nothing to index (see the skipped list)")
    job.encoder.fit_features(feats)
    save_npz(state_path, job.encoder.state())


def _encode_pending(job: _Job, disk: "Disk") -> None:
    """Phase 3: vectors of every row stored without one, committed batch by batch."""
    import numpy as np

    from cover_id.progress import progress

    slots = [r[0] for r in disk.query("SELECT slot FROM refs WHERE has_vec = 0 ORDER BY slot")]
    workers = auto_workers(len(slots), job.workers, job.settings.get("threads"))
    with progress(len(slots), "vectors", job.show) as advance:
        for a in range(0, len(slots), 256):
            part = slots[a : a + 256]
            raw = encode_split(job.encoder, [disk.features(s) for s in part], workers)
            emb = job.projection.apply(raw) if job.projection is not None else None
            with disk.transaction() as db:
                disk.write_vectors(db, part, np.asarray(raw, np.float32), emb)
            advance(len(part))


def _incremental(
    job: _Job, old: "IndexStore", catalog: list[Reference], root: Path, refs: Path | None, metadata: Path | None
) -> None:
    """Append new/changed files and tombstone deleted ones, in transactions on the live index."""
    from cover_id.progress import progress

    report = job.report
    disk = old._disk
    known: dict[str, tuple[int, str, int | None, int | None, str]] = {}
    for slot, fn, sha, size, mtime, rec in disk.query(
        "SELECT slot, filename, sha256, size, mtime_ns, record FROM refs WHERE deleted = 0 AND has_vec = 1"
    ):
        known[fn] = (slot, sha, size, mtime, rec)
    todo: list[tuple[Reference, str, tuple[int, int]]] = []
    replace: dict[str, int] = {}
    pairs: list[tuple[str, str | None]] = []
    touch: list[tuple[Any, ...]] = []  # (size, mtime, record, slot) for unchanged files whose stat/record moved
    seen: set[str] = set()
    with progress(len(catalog), "checking", job.show) as advance:
        for ref in catalog:
            seen.add(ref.filename)
            st = _stat(ref, report.skipped)
            advance()
            if st is None:
                continue
            k = known.get(ref.filename)
            record = json.dumps(ref.record(), ensure_ascii=False)
            if k is not None and (k[2], k[3]) == st:
                sha = k[1]
            else:
                sha = _sha(ref, report.skipped)
                if sha is None:
                    continue
            pairs.append((ref.filename, sha))
            if k is not None and k[1] == sha:
                report.reused += 1
                if (k[2], k[3]) != st or k[4] != record:
                    touch.append((st[0], st[1], record, k[0]))
            else:
                if k is not None:
                    replace[ref.filename] = k[0]
                todo.append((ref, sha, st))
    _duplicates(pairs, report)
    added = Path(old.path).resolve().parent / f"{Path(old.path).resolve().name}.added" if old.path else None
    gone = [k[0] for fn, k in known.items() if fn not in seen and not _kept_addition(fn, added)]
    report.removed = len(gone)
    if touch or gone:
        with disk.transaction() as db:
            db.executemany("UPDATE refs SET size = ?, mtime_ns = ?, record = ? WHERE slot = ?", touch)
            db.executemany("UPDATE refs SET deleted = 1 WHERE slot = ?", [(g,) for g in gone])
    t = time.perf_counter()
    _extract_and_append(job, disk, todo, vectors=True, replace=replace)
    report.embed_seconds = time.perf_counter() - t
    created = old.manifest.get("created")
    manifest = _base_manifest(job, root, refs, metadata, created)
    keep = {k: v for k, v in old.manifest.items() if k not in manifest and k != "files"}
    manifest.update(keep)
    if report.embedded:
        manifest["calibration"] = None  # thresholds were measured on other vectors
    assert old.path is not None
    store = type(old).open(old.path)  # a snapshot that sees the committed rows
    store.manifest.update({k: v for k, v in manifest.items()})
    store.save()
    report.indexed = store.size
    old.__dict__.update(store.__dict__)


def _kept_addition(filename: str, added: Path | None) -> bool:
    """A reference added while serving (``POST /api/refs``, a taught view): its image lives in
    ``INDEX.added/``, not in the catalog, and a re-run of the build keeps it."""
    p = Path(filename)
    return added is not None and p.is_absolute() and p.parent.resolve() == added


def _check_head(projection: Any, spec: dict[str, Any], dim: int, check_state: bool) -> None:
    """A head only makes sense on the encoder (and learned codebook) it was trained on."""
    want = projection.encoder
    same_state = not check_state or want.get("fingerprint") in (None, spec.get("fingerprint"))
    if (
        (want.get("name"), want.get("params")) != (spec.get("name"), spec.get("params"))
        or projection.in_dim != dim
        or not same_state
    ):
        from cover_id.index.store import describe_spec

        raise CoverIdError(
            f"projection head was trained for encoder {describe_spec(want)} ({projection.in_dim}-d), "
            f"not {describe_spec(spec)} ({dim}-d); train one with `cover-id train` for this encoder"
        )
