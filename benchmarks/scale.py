"""How the index engine scales: build, disk, memory, latency, accuracy and writes at N references.

Each size indexes the 100 DVD references + 258 real distractor covers + the books and
paintings references (101 + 91) + generated distractor covers up to N. Generated covers
are compositions of crops of the DVD ``distractors/`` images with printed text (never of a
reference, so none holds a piece of a true cover). For every size it prints: build rate,
disk, RSS after open and peak RSS while identifying (measured in a fresh process), per-stage
latency p50/p95 over the 100 DVD photos, accepted-correct / false accepts on the DVD, books
and paintings photos (and which photos were not accepted-correct), the latency of adding and
deleting one reference, and an incremental ``index`` run with one changed file. An index
cached before is first brought up to date with its references folder (incrementally).

    python benchmarks/scale.py --sizes 1000,10000 [--photos 100] [--threads 2]

Indexes are cached in ``.cache/bench/scale/``; building 10k+ takes a long time on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, DATA, DVD, percentile, require_data, set_truth, truth

SCALE = CACHE / "scale"
OTHER_SETS = ("books", "paintings")  # measured beside the DVD photos, their references in every index
WORDS = (
    "THE",
    "NIGHT",
    "RETURN",
    "OF",
    "LOST",
    "CITY",
    "DARK",
    "GOLD",
    "EDITION",
    "SPECIAL",
    "COLLECTOR",
    "STORM",
    "RIVER",
    "HOUSE",
    "LEGEND",
    "WINTER",
    "PROMISE",
    "SECRET",
    "ROAD",
    "BLUE",
    "FIRE",
    "DVD",
)


def make_distractor(k: int, sources: list[Path], out: Path) -> None:
    """Cover k: 2-4 crops of distractor covers on a cover-shaped canvas, plus 1-3 lines of text."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1_000_003 * k + 7)
    w, h = int(rng.integers(280, 360)), int(rng.integers(380, 480))
    canvas = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        src = cv2.imread(str(sources[int(rng.integers(len(sources)))]))
        if src is None:
            continue
        sh, sw = src.shape[:2]
        cw, ch = int(sw * rng.uniform(0.3, 0.8)), int(sh * rng.uniform(0.3, 0.8))
        x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
        crop = src[y0 : y0 + ch, x0 : x0 + cw]
        tw, th = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.3, 0.7))
        crop = cv2.resize(crop, (tw, th))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        px, py = int(rng.integers(0, w - tw + 1)), int(rng.integers(0, h - th + 1))
        canvas[py : py + th, px : px + tw] = crop
    for _ in range(int(rng.integers(1, 4))):
        text = " ".join(rng.choice(WORDS, int(rng.integers(1, 4))))
        scale = float(rng.uniform(0.6, 1.4))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        org = (int(rng.integers(0, w // 3)), int(rng.integers(30, h - 10)))
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, int(rng.integers(1, 4)), cv2.LINE_AA)
    cv2.imwrite(str(out), canvas, [cv2.IMWRITE_JPEG_QUALITY, 88])


def refs_for(n: int) -> Path:
    """A folder of N reference images: references + distractors + generated distractors."""
    dvd = require_data()
    folder = SCALE / f"refs_{n}"
    gen = SCALE / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    sources = sorted((dvd / "distractors").iterdir())
    for sub in ("references", "distractors"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((dvd / sub).iterdir()):
            link = folder / sub / f.name
            if not link.exists():
                os.symlink(f, link)
    extra = 0
    for name in OTHER_SETS:  # the other dev sets' references, so their photos are measured at every size
        src = DATA / name / "references"
        if src.is_dir():
            (folder / name / "references").mkdir(parents=True, exist_ok=True)
            for f in sorted(src.iterdir()):
                extra += 1
                link = folder / name / "references" / f.name
                if not link.exists():
                    os.symlink(f, link)
    n_gen = max(0, n - 100 - len(sources) - extra)
    (folder / "generated").mkdir(exist_ok=True)
    for k in range(n_gen):
        f = gen / f"gen_{k:07d}.jpg"
        if not f.exists():
            make_distractor(k, sources, f)
        link = folder / "generated" / f.name
        if not link.exists():
            os.symlink(f, link)
    for link in (folder / "generated").iterdir():  # made for a folder without the other sets: N in all
        if int(link.stem.split("_")[1]) >= n_gen:
            link.unlink()
    return folder


def disk_mb(path: Path) -> float:
    """Space used on disk (blocks: a sparse file counts what it holds)."""
    return sum(min(f.stat().st_size, f.stat().st_blocks * 512) for f in path.rglob("*") if f.is_file()) / 2**20


# The measuring scripts (MEASURE, SYNTH_MEASURE) run in a fresh process, after this resident-memory probe.
RSS = r"""
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
"""

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
base = rss()
t = time.perf_counter()
from cover_id.index.store import IndexStore
from cover_id.pipeline import Identifier
store = IndexStore.open(Path(sys.argv[1]))
t_open = time.perf_counter() - t
ident = Identifier(store, {"threads": int(sys.argv[3])})
after_open = rss()
pairs = json.loads(sys.argv[2])
by_file = {r["filename"]: r["id"] for r in store.records}
stages, missed, sets = {}, [], {}
for k, (name, photo, ref) in enumerate(pairs):
    r = ident.identify(photo)
    if k == 0:
        continue  # the first query loads the vote index
    if name == "dvd-covers":  # latency: the DVD photos, as before
        for key, v in r["timings_ms"].items():
            stages.setdefault(key, []).append(v)
    good = r["match"] is not None and r["match"]["id"] == by_file[ref]
    row = sets.setdefault(name, {"photos": 0, "accepted_correct": 0, "false_accepts": 0})
    row["photos"] += 1
    row["accepted_correct"] += good and r["decision"] == "accept"
    row["false_accepts"] += (not good) and r["decision"] == "accept"
    if not (good and r["decision"] == "accept"):
        missed.append([Path(photo).name, r["decision"], r["match"]["filename"] if r["match"] else None])
dvd = sets.get("dvd-covers", {})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"open_s": t_open, "rss_import": base, "rss_open": after_open, "rss_peak": peak,
                  "stages": stages, "accepted_correct": dvd.get("accepted_correct", 0),
                  "false_accepts": dvd.get("false_accepts", 0), "photos": dvd.get("photos", 0), "sets": sets,
                  "not_accepted_correct": missed}))
"""


def measure(index: Path, photos: int, threads: int) -> dict:
    """Identify in a fresh process: the first ``photos`` DVD photos and, where the index holds their
    references, every books and paintings photo."""
    pairs = [("dvd-covers", p, r) for p, r in truth()[:photos]]
    for name in OTHER_SETS:
        if (index / "manifest.json").is_file() and (DATA / name / "truth.csv").is_file():
            pairs += [(name, p, f"{name}/{r}") for p, r in set_truth(name)]
    pairs = [pairs[0]] + pairs  # a warm-up query that is not counted
    arg = json.dumps([[name, str(p), r] for name, p, r in pairs])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", RSS + MEASURE, str(index), arg, str(threads)], capture_output=True, text=True, env=env
    )
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def writes(index: Path, refs: Path, threads: int) -> dict:
    """Latency of one add and one delete through the store (what serve does), and of an incremental index run."""
    from cover_id.features import extract_features
    from cover_id.imageio import read_image
    from cover_id.index.build import build_index
    from cover_id.index.store import IndexStore

    store = IndexStore.open(index)
    enc = store.create_encoder()
    img = read_image(DVD / "references" / sorted(os.listdir(DVD / "references"))[0], max_side=1024)
    adds, dels = [], []
    for k in range(5):
        t = time.perf_counter()
        feats = extract_features(img)
        raw = enc.encode_features([feats])[0]
        new = store.copy()
        new.add(
            {"id": f"scale-add-{k}", "name": "x", "filename": f"/nonexistent/scale-add-{k}.jpg"}, raw, feats, "0" * 64
        )
        new.save()
        adds.append(time.perf_counter() - t)
        store = new
    for k in range(5):
        t = time.perf_counter()
        new = store.copy()
        new.remove(f"scale-add-{k}")
        new.save()
        dels.append(time.perf_counter() - t)
        store = new
    sources = sorted((DVD / "distractors").iterdir())
    extra = refs / "zz-incremental.jpg"
    runs = {}
    for step, seed in (("new", 10**9), ("changed", 10**9 + 1), ("deleted", None)):
        if seed is None:
            extra.unlink()
        else:
            make_distractor(seed, sources, extra)
        t = time.perf_counter()
        rep = build_index(index, refs=refs, settings={"encoder": "local", "threads": threads}, show_progress=False)
        runs[step] = (time.perf_counter() - t, rep.embedded, rep.removed)
    return {"add_ms": [a * 1e3 for a in adds], "delete_ms": [d * 1e3 for d in dels], "incremental": runs}


SYNTH_MEASURE = r"""
import json, sys, time
import numpy as np
from pathlib import Path
from cover_id.features import Features
from cover_id.index.store import IndexStore

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

base = rss()
t = time.perf_counter()
store = IndexStore.open(Path(sys.argv[1]))
voter = store.voter() if store.has_voter else None  # loaded here: part of opening for a query
t_open = time.perf_counter() - t
after, after_anon, open_peak = rss(), anon(), peak()
with np.load(sys.argv[2]) as z:
    queries = [z[k] for k in sorted(z.files)]  # every view of a photo: (views, d)
with np.load(sys.argv[3]) as z:
    feats = [Features(np.zeros((len(z[k]), 2), np.float32), z[k], (800, 800)) for k in sorted(z.files)]
from concurrent.futures import ThreadPoolExecutor
from cover_id.runtime import worker_init
pool = ThreadPoolExecutor(1, initializer=worker_init, initargs=(2,))
pool.submit(lambda: None).result()
passes = []
for _ in range(2):  # the first pass reads the lists from disk (or the page cache); the second finds them in memory
    g_ms, v_ms, tot, side = [], [], [], []
    for q, f in zip(queries, feats):
        t0 = time.perf_counter()
        store.search(q, 25)
        t1 = time.perf_counter()
        if voter is not None:
            voter.shortlist(f, 25)
        t2 = time.perf_counter()
        # as identify runs them: the votes on the pool while this thread searches the vectors
        job = pool.submit(voter.shortlist, f, 25) if voter is not None else None
        store.search(q, 25)
        if job is not None:
            job.result()
        t3 = time.perf_counter()
        g_ms.append((t1 - t0) * 1e3); v_ms.append((t2 - t1) * 1e3); tot.append((t2 - t0) * 1e3)
        side.append((t3 - t2) * 1e3)
    passes.append({k: [float(np.percentile(v, 50)), float(np.percentile(v, 95))]
                   for k, v in (("global_ms", g_ms), ("votes_ms", v_ms), ("total_ms", tot), ("side_ms", side))})
print(json.dumps({"size": store.size, "open_s": t_open, "rss_base": base, "rss_open": after, "peak_open": open_peak,
                  "anon_open": after_anon, "rss_after_search": rss(), "anon_after_search": anon(),
                  "search_ms": passes[-1]["global_ms"], "passes": passes}))
"""


def synthetic(
    n: int, source: Path, threads: int, words: Path | None = None, reuse: bool = False, layout: str = "file"
) -> None:
    """An index folder of ``n`` references synthesised from ``source``'s real ones, for open/memory/latency.

    Only what opening and the shortlist need is synthetic; nothing here measures accuracy.

    - Records: ``n`` SQLite rows (no keypoints). Full vectors: a sparse file of zeros of the
      right size (the re-scoring of candidates reads them: memory-speed here, where a real
      collection of this size would read 2 x 25 rows of 64 KiB from disk per photo).
    - Compact vectors: ``source``'s real compact vectors (projected as its index projects
      them), drawn with replacement, plus Gaussian noise, re-normalised; indexed as the
      engine would at ``n`` (:func:`cover_id.index.search.pick_kind`), with the real basis.
    - Visual-word lists (with ``words``, a :class:`~cover_id.index.vote.WordVoter` folder
      built over ``source``'s references with the vocabulary the build picks at ``n``,
      :func:`~cover_id.index.vote.vocabulary_for`): every real list replicated ``n / n_real``
      times; copy ``r`` holds reference ids ``+ r * n_real`` and each signature XORed with a
      random sparse mask (about 6 of 64 bits flipped), so copies are near, not exact,
      duplicates. The lists keep the real distribution of lengths across words, scaled to
      ``n``: a query reads what it would read in a collection of ``n`` references whose
      descriptors spread over the words like the real ones.

    The DVD photos' real descriptors and vectors are then timed in a fresh process:
    global search (k = 25, a vector for each of the photo's views: the whole photo and the detected
    cover) + word shortlist (top 25, the photo's 500 strongest keypoints voting, as identify votes)
    per photo, one after the other and side by side (the votes on a second thread, as identify runs
    them), p50/p95, RSS, open time.

    ``layout``: how the compact index is checkpointed, ``file`` (its own FAISS file beside
    ``global.npz``, as the engine writes it) or ``npz`` (the bytes inside ``global.npz``, as
    indexes built before did); with ``reuse`` an existing folder is converted, not rebuilt.
    """
    import numpy as np

    from cover_id.config import Settings
    from cover_id.features import strongest
    from cover_id.identify.retrieve import VOTE_KEYPOINTS, embed_views
    from cover_id.identify.views import make_views, photo_features
    from cover_id.imageio import read_image
    from cover_id.index.disk import create_disk
    from cover_id.index.search import CHECKPOINT, GlobalIndex, load_global, pick_kind, remove_orphans, save_global
    from cover_id.index.store import WORDS_DIR, IndexStore
    from cover_id.plugins import create

    real = IndexStore.open(source)
    folder = SCALE / f"synthetic_{n}"
    t_db = t_index = 0.0
    kind = pick_kind(n)
    if reuse and (folder / "manifest.json").is_file():  # records and compact vectors from an earlier run
        manifest = json.loads((folder / "manifest.json").read_text())
        d = int(manifest["search"]["dim"])
    else:
        shutil.rmtree(folder, ignore_errors=True)
        disk = create_disk(folder, real._disk.dim, None)
        t = time.perf_counter()
        with disk.transaction() as db:
            for a in range(0, n, 100_000):
                rows = []
                for i in range(a, min(n, a + 100_000)):
                    rec = {"id": f"synthetic-{i:07d}", "name": "S", "filename": f"synthetic/{i:07d}.jpg"}
                    rows.append((i, rec["id"], rec["filename"], json.dumps(rec), 320, 400))
                db.executemany(
                    "INSERT INTO refs(slot, id, filename, record, kp_off, kp_n, w, h, has_vec)"
                    " VALUES (?, ?, ?, ?, 0, 0, ?, ?, 1)",
                    rows,
                )
        t_db = time.perf_counter() - t
        os.truncate(folder / "vectors.f32", n * real._disk.dim * 4)  # sparse: no disk used
        g_real = real._global()
        base = np.concatenate([g_real.project(c) for c in real._disk.all_vectors(real._live, "raw")])
        d = base.shape[1]

        def sample(m: int, seed: int) -> np.ndarray:
            r = np.random.default_rng(seed)
            v = base[r.integers(0, len(base), m)] + r.normal(0, 0.35 / np.sqrt(d), (m, d)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        t = time.perf_counter()
        from cover_id.index.search import IVF_TRAIN

        train = sample(min(n, IVF_TRAIN), 1)
        g = GlobalIndex.build(
            None, d, n, (sample(min(100_000, n - a), 10 + a) for a in range(0, n, 100_000)), train, kind=kind
        )
        g.basis, g.scale, g.learned_from = g_real.basis, g_real.scale, g_real.learned_from
        t_index = time.perf_counter() - t
        save_global(folder, g)
        manifest = {k: v for k, v in real.manifest.items() if k not in ("files",)}
        manifest.update(format=2, count=n, voter=False, search=g.describe())
        disk.close()
    with np.load(folder / CHECKPOINT) as z:
        now = "npz" if "index" in z.files else "file"
    if now != layout:
        g = load_global(folder)
        if layout == "file":
            save_global(folder, g)
        else:
            with open(folder / CHECKPOINT, "wb") as fh:
                np.savez(fh, **g.state())
            remove_orphans(folder)
        del g
    t_words = 0.0
    if words is not None:
        made_from = folder / WORDS_DIR / "replicated_from.txt"
        if reuse and made_from.is_file() and made_from.read_text() == str(words.resolve()):
            print(f"[synthetic {n}] word lists: kept (replicated from {words} before)", flush=True)
        else:
            t = time.perf_counter()
            shutil.rmtree(folder / WORDS_DIR, ignore_errors=True)
            total = replicate_words(words, folder / WORDS_DIR, n, real.size)
            made_from.write_text(str(words.resolve()))
            t_words = time.perf_counter() - t
            print(f"[synthetic {n}] word lists: {total:,} postings replicated in {t_words:.0f}s", flush=True)
        manifest.update(voter=True, voter_kind="words", voter_covered=n)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(source / "encoder_state.npz", folder / "encoder_state.npz")
    enc = real.create_encoder()
    pairs = truth()[:100]
    # as identify looks: the photo's keypoints, its views (the whole photo and the detected cover), a vector each
    defaults = Settings()
    detector = create("detectors", defaults.detector, max_side=defaults.detect_side)
    qfeats, qvecs = [], {}
    for i, (p, _) in enumerate(pairs):
        image = read_image(p, max_side=defaults.max_side)
        f = photo_features(image)
        quads = detector.detect(image, max_quads=1)
        _, views = make_views(image, f, quads[0] if quads else None)
        qfeats.append(f)
        qvecs[f"q{i:03d}"] = np.asarray(embed_views(enc, real, views), np.float32)
    np.savez(SCALE / "queries.npz", **qvecs)
    # as identify votes: the photo's strongest keypoints
    voting = {f"q{i:03d}": strongest(f, VOTE_KEYPOINTS).desc for i, f in enumerate(qfeats)}
    np.savez(SCALE / "query_desc.npz", **voting)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS + SYNTH_MEASURE,
            str(folder),
            str(SCALE / "queries.npz"),
            str(SCALE / "query_desc.npz"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    m = json.loads(out.stdout.strip().splitlines()[-1])
    cold, warm = m["passes"]
    print(
        f"[synthetic {n}] {kind} over {d}-d compact vectors ({layout} checkpoint); SQLite rows {t_db:.0f}s, index build {t_index:.0f}s; "
        f"disk {disk_mb(folder):.0f} MiB; open {m['open_s']:.2f}s; RSS after imports {m['rss_base']:.0f} MiB, "
        f"after open {m['rss_open']:.0f} MiB (anonymous {m['anon_open']:.0f}, peak while opening {m['peak_open']:.0f}), after 2x100 queries "
        f"{m['rss_after_search']:.0f} MiB (anonymous {m['anon_after_search']:.0f}); per photo p50/p95 ms, first pass: "
        f"global {cold['global_ms'][0]:.1f}/{cold['global_ms'][1]:.1f}, votes {cold['votes_ms'][0]:.1f}/"
        f"{cold['votes_ms'][1]:.1f}, total {cold['total_ms'][0]:.1f}/{cold['total_ms'][1]:.1f}; second pass: "
        f"global {warm['global_ms'][0]:.1f}/{warm['global_ms'][1]:.1f}, votes {warm['votes_ms'][0]:.1f}/"
        f"{warm['votes_ms'][1]:.1f}, total {warm['total_ms'][0]:.1f}/{warm['total_ms'][1]:.1f}; "
        f"side by side as identify runs them (votes on a second thread) {warm['side_ms'][0]:.1f}/{warm['side_ms'][1]:.1f}"
    )
    print(json.dumps({"synthetic": n, "kind": kind, "layout": layout, "words_s": t_words, **m}), flush=True)


def replicate_words(src: Path, dst: Path, n: int, n_real: int, chunk: int = 10_000_000, seed: int = 0) -> int:
    """Lists of ``n`` references from real lists over ``n_real`` (see :func:`synthetic`); returns the postings."""
    import numpy as np

    copies = -(-n // n_real)
    dst.mkdir(parents=True, exist_ok=True)
    with np.load(src / "vocab.npz", allow_pickle=False) as z:
        vocab = {k: z[k] for k in z.files}
    offsets = vocab["offsets"].astype(np.int64)
    post = np.load(src / "postings.npy", mmap_mode="r")
    sigs = np.load(src / "sigs.npy", mmap_mode="r")
    lengths = np.diff(offsets)
    new_offsets = np.zeros_like(offsets)
    np.cumsum(lengths * copies, out=new_offsets[1:])
    total = int(new_offsets[-1])
    out_p = np.lib.format.open_memmap(dst / "postings.npy", "w+", np.uint32, (total,))
    out_s = np.lib.format.open_memmap(dst / "sigs.npy", "w+", np.uint64, (total,))
    rng = np.random.default_rng(seed)
    bit = np.uint64(1) << np.arange(64, dtype=np.uint64)
    masks = np.zeros(1 << 16, np.uint64)  # a pool of sparse masks, ~6 bits each
    for _ in range(6):
        masks |= bit[rng.integers(0, 64, len(masks))]
    words = len(lengths)
    w0 = 0
    while w0 < words:  # whole words at a time, about ``chunk`` output postings
        w1 = int(np.searchsorted(new_offsets, new_offsets[w0] + chunk, "right"))
        w1 = min(words, max(w0 + 1, w1 - 1))
        lens = lengths[w0:w1]
        a = offsets[w0]
        seg_p = np.asarray(post[a : offsets[w1]], np.int64)
        seg_s = np.asarray(sigs[a : offsets[w1]])
        starts = np.repeat(offsets[w0:w1] - a, copies)
        rep = np.repeat(lens, copies)
        copy_no = np.repeat(np.tile(np.arange(copies, dtype=np.int64), len(lens)), rep)
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(rep)[:-1]]), rep) + np.arange(int(rep.sum()))
        ids = seg_p[pos] + copy_no * n_real
        flips = np.where(copy_no > 0, masks[rng.integers(0, len(masks), len(pos))], np.uint64(0))
        keep = ids < n
        b0, b1 = new_offsets[w0], new_offsets[w1]
        out_p[b0:b1] = np.where(keep, ids, ids % n_real).astype(np.uint32)  # the last copy may pass n: wrap
        out_s[b0:b1] = seg_s[pos] ^ flips
        w0 = w1
    out_p.flush()
    out_s.flush()
    del out_p, out_s
    vocab["offsets"] = new_offsets
    vocab["covered"] = np.array([n], np.int64)
    with open(dst / "vocab.npz", "wb") as fh:
        np.savez(fh, **vocab)
    for name in ("c2.npy", "medians.npy"):  # the memory-mapped part of the vocabulary, where it has one
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000", help="comma-separated sizes; '' with --source for --synthetic only")
    ap.add_argument("--source", type=Path, default=None, help="the real index --synthetic samples from")
    ap.add_argument(
        "--synthetic", type=int, default=0, help="also measure open/memory/search on N synthetic references"
    )
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--vote-index", default="auto", choices=("auto", "nn", "words"), help="keypoint-vote back-end")
    ap.add_argument("--reuse", action="store_true", help="with --synthetic: keep its records and compact vectors")
    ap.add_argument(
        "--layout",
        default="file",
        choices=("file", "npz"),
        help="with --synthetic: compact index in its own FAISS file (today) or inside global.npz (before)",
    )
    ap.add_argument(
        "--words",
        type=Path,
        default=None,
        help="with --synthetic: visual-word lists over the last size's index to replicate (shortlist.py --words)",
    )
    args = ap.parse_args()
    from cover_id.index.build import build_index

    print(f"machine: {os.cpu_count()} cores visible, threads {args.threads}; photos: first {args.photos} DVD photos")
    last = args.source
    for n in [int(x) for x in args.sizes.split(",") if x]:
        refs = refs_for(n)
        index = SCALE / (f"index_{n}" if args.vote_index == "auto" else f"index_{n}_{args.vote_index}")
        build_s = None
        if args.rebuild or not (index / "manifest.json").is_file():
            shutil.rmtree(index, ignore_errors=True)
            t = time.perf_counter()
            rep = build_index(
                index,
                refs=refs,
                settings={"encoder": "local", "threads": args.threads, "vote_index": args.vote_index},
                show_progress=True,
                workers=args.workers,
            )
            build_s = time.perf_counter() - t
            print(f"[{n}] built {rep.indexed} references in {build_s:.0f}s ({rep.indexed / build_s:.1f} refs/s)")
        else:  # an index cached before its refs folder grew (the other dev sets' references): bring it up to date
            rep = build_index(
                index, refs=refs, settings={"encoder": "local", "threads": args.threads}, show_progress=True
            )
            if rep.embedded or rep.removed:
                print(f"[{n}] cached index brought up to date: {rep.embedded} added, {rep.removed} removed")
        m = measure(index, args.photos, args.threads)
        w = writes(index, refs, args.threads)
        st = {k: (percentile(v, 50), percentile(v, 95)) for k, v in m["stages"].items()}
        size = ref_count(index)
        print(
            f"[{n}] references {size}, disk {disk_mb(index):.0f} MiB, open {m['open_s']:.2f}s, "
            f"RSS after import {m['rss_import']:.0f} MiB, after open {m['rss_open']:.0f} MiB, "
            f"peak while identifying {m['rss_peak']:.0f} MiB"
        )
        print(f"[{n}] latency p50/p95 ms: " + ", ".join(f"{k} {a:.0f}/{b:.0f}" for k, (a, b) in st.items()))
        print(
            f"[{n}] "
            + "; ".join(
                f"{name}: accepted-correct {row['accepted_correct']}/{row['photos']}, false accepts {row['false_accepts']}"
                for name, row in m["sets"].items()
            )
            + f"; not accepted-correct: {m.get('not_accepted_correct') or 'none'}"
        )
        runs = ", ".join(f"{k} file {v[0]:.1f}s" for k, v in w["incremental"].items())
        print(
            f"[{n}] add p50 {percentile(w['add_ms'], 50):.0f} ms (max {max(w['add_ms']):.0f}), delete p50 "
            f"{percentile(w['delete_ms'], 50):.0f} ms (max {max(w['delete_ms']):.0f}); "
            f"`cover-id index` re-run with one {runs}"
        )
        last = index
        figures = {k: v for k, v in m.items() if k != "stages"}
        stages = {k: list(v) for k, v in st.items()}
        print(json.dumps({"n": n, "build_s": build_s, "disk_mib": disk_mb(index), **figures, "stages": stages, **w}))
    if args.synthetic and last is not None:
        synthetic(args.synthetic, last, args.threads, args.words, args.reuse, args.layout)


def ref_count(index: Path) -> int:
    from cover_id.index.store import IndexStore

    return IndexStore.open(index).size


if __name__ == "__main__":
    main()
