"""The identify pipeline: photo -> cover quad -> candidates -> geometry -> decision.

One :class:`Identifier` loads the index, encoder, detector and re-ranker once
and answers many photos. Steps (each timed in ``timings_ms``):

1. decode at a bounded size (reduced-resolution JPEG decoding),
2. detect the largest plausible cover quad,
3. one RootSIFT pass over the photo; the keypoints inside the quad, carried
   into the rectified cover's frame, form the "crop" view, all of them the
   "full" view,
4. embed both views and retrieve ``top_k`` candidates for each from FAISS, add
   the references most voted for by the photo's keypoints, rank-fuse,
5. verify the best ``rerank_k`` candidates geometrically in both views against
   the cached reference keypoints (one matching pass, one homography per view),
6. pick the view ("strategy") with the stronger evidence and decide accept /
   review / reject with thresholds from flags, the index's calibration, or the
   built-in defaults; a photo not accepted is looked at again at 1600 px.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from cover_id.features import Features
    from cover_id.index_store import IndexStore
    from cover_id.rerankers.geometric import GeomMatch, Thresholds

N_ALTERNATIVES = 5
MAX_QUADS = 6  # --multi looks for at most this many covers
SECOND_LOOK_SIDE = 1600  # photos not accepted at first are looked at again this large
SECOND_LOOK_FEATURES = 3000


class _View:
    """One way of looking at the photo: the whole of it, or the rectified cover.

    Every view shares the photo's single RootSIFT pass: ``feats`` are the
    keypoints inside the view, in view coordinates; ``local`` maps each photo
    keypoint to its index in the view (-1 outside); ``to_photo`` maps view
    pixels back to the processed photo.
    """

    def __init__(self, name: str, feats: "Features", local: "np.ndarray", to_photo: "np.ndarray", make_image: Any) -> None:
        self.name, self.feats, self.local, self.to_photo, self._make_image = name, feats, local, to_photo, make_image

    def image(self) -> "np.ndarray":
        return self._make_image()

    @classmethod
    def whole(cls, feats: "Features", image: "np.ndarray") -> "_View":
        import numpy as np

        return cls("full", feats, np.arange(len(feats)), np.eye(3), lambda: image)

    @classmethod
    def crop(cls, full: "_View", image: "np.ndarray", quad: Any) -> "_View":
        """Keypoints inside the quad, carried into the rectified cover's frame."""
        import cv2
        import numpy as np

        from cover_id.detectors.quad import rectify, rectify_transform
        from cover_id.features import Features

        matrix, (w, h) = rectify_transform(quad.corners)
        xy = full.feats.xy
        mapped = cv2.perspectiveTransform(xy.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2) if len(xy) else xy
        inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < w) & (mapped[:, 1] >= 0) & (mapped[:, 1] < h) if len(xy) else np.zeros(0, bool)
        idx = np.flatnonzero(inside)
        local = np.full(len(xy), -1, np.int64)
        local[idx] = np.arange(len(idx))
        feats = Features(mapped[idx].astype(np.float32), full.feats.desc[idx], (w, h))
        return cls("crop", feats, local, np.linalg.inv(matrix), lambda: rectify(image, quad.corners))

    def subset(self, keep: "np.ndarray") -> "_View":
        """The same view restricted to some keypoints (--multi explains matched covers away)."""
        import numpy as np

        from cover_id.features import Features

        idx = np.flatnonzero(keep)
        local = np.full(len(self.feats), -1, np.int64)
        local[idx] = np.arange(len(idx))
        feats = Features(self.feats.xy[idx], self.feats.desc[idx], self.feats.size)
        return _View(self.name, feats, local, self.to_photo, self._make_image)


def _fuse(rankings: list[list[int]], limit: int, k: float = 10.0) -> list[int]:
    """Reciprocal-rank fusion of several candidate lists; the best ``limit``."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda i: -score[i])[:limit]


Variants = "dict[str, tuple[list[GeomMatch], dict[int, float]]]"


def choose(
    store: "IndexStore", variants: Variants, thresholds: "Thresholds", exclude: int | None = None
) -> "tuple[list[tuple[str, tuple[list[GeomMatch], dict[int, float]]]], str]":
    """Order the views by geometric evidence and decide on the strongest one.

    ``variants`` maps a view name to (its candidates best first, their cosines).
    ``exclude`` drops one reference first: verify uses it to ask what the
    pipeline would say if that item were not in the collection.
    """
    from cover_id.rerankers.geometric import decide

    if exclude is not None:
        variants = {k: ([m for m in ranked if m.ref_index != exclude], cos) for k, (ranked, cos) in variants.items()}

    def strength(item: tuple[str, tuple[list, dict]]) -> tuple[float, int, int]:
        ranked = item[1][0]
        best = ranked[0] if ranked else None
        return (best.score, best.inliers, item[0] == "crop") if best else (0.0, 0, item[0] == "crop")

    ordered = sorted(variants.items(), key=strength, reverse=True)
    if not ordered or not ordered[0][1][0]:
        return ordered, "reject"
    ranked, cosines = ordered[0][1]
    best = ranked[0]
    second = _rival(store, best, ranked[1:])
    return ordered, decide(best, second, cosines.get(best.ref_index, 0.0), thresholds)


def _outline(store: "IndexStore", m: "GeomMatch") -> "np.ndarray | None":
    pts = _project(m.homography, content_box(store.features[m.ref_index]))
    return None if pts is None else __import__("numpy").float32(pts)


def _rival(store: "IndexStore", best: "GeomMatch | None", others: "list[GeomMatch]") -> "GeomMatch | None":
    """The strongest other candidate competing for the same place in the photo.

    A second cover elsewhere in the photo (two DVDs on a table) is no reason to
    doubt the first: only candidates whose outline overlaps the best's count.
    """
    if best is None or best.homography is None or store is None:
        return others[0] if others else None
    mine = _outline(store, best)
    for m in others:
        if m.homography is None or mine is None:
            return m
        theirs = _outline(store, m)
        if theirs is None or _iou(mine, theirs) >= 0.2:
            return m
    return None


def _iou(a: "np.ndarray", b: "np.ndarray") -> float:
    import cv2

    try:
        inter, _ = cv2.intersectConvexConvex(a, b)
    except cv2.error:  # a non-convex outline: treat as overlapping (be cautious)
        return 1.0
    union = abs(cv2.contourArea(a)) + abs(cv2.contourArea(b)) - inter
    return float(inter / union) if union > 0 else 0.0


def _inside(xy: "np.ndarray", outline: "np.ndarray") -> "np.ndarray":
    import cv2
    import numpy as np

    poly = outline.reshape(-1, 1, 2).astype(np.float32)
    return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in xy], bool)


def _best_overlap(quads: list, outline: "np.ndarray") -> Any:
    """The detected quad that best matches a verified outline (IoU >= 0.5), if any."""
    import numpy as np

    best, best_iou = None, 0.5
    for q in quads:
        iou = _iou(outline.astype(np.float32), q.corners.astype(np.float32))
        if iou > best_iou:
            best, best_iou = q, iou
    return best


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def content_box(feats: "Features") -> tuple[float, float, float, float]:
    """Where a reference's printed content is: its keypoints' extent, slightly padded.

    Reference scans often carry plain margins (a square canvas around a portrait
    DVD cover); outlines and crops should follow the cover, not the canvas.
    """
    import numpy as np

    w, h = feats.size
    if len(feats) < 8:
        return 0.0, 0.0, float(w), float(h)
    lo, hi = np.percentile(feats.xy, 0.5, axis=0), np.percentile(feats.xy, 99.5, axis=0)
    snap = 0.1 * max(w, h)  # a plain strip narrower than this is part of the cover, not a margin
    x0 = 0.0 if lo[0] < snap else float(lo[0]) - 0.02 * w
    y0 = 0.0 if lo[1] < snap else float(lo[1]) - 0.02 * h
    x1 = float(w) if w - hi[0] < snap else float(hi[0]) + 0.02 * w
    y1 = float(h) if h - hi[1] < snap else float(hi[1]) + 0.02 * h
    if (x1 - x0) * (y1 - y0) < 0.25 * w * h:  # too little of the image: trust the canvas
        return 0.0, 0.0, float(w), float(h)
    return float(x0), float(y0), float(x1), float(y1)


def _project(h: "np.ndarray | None", box: tuple[float, float, float, float], then: "np.ndarray | None" = None) -> list | None:
    """A reference box's corners through homography ``h`` (and optionally ``then``) -> 4 [x, y]."""
    import cv2
    import numpy as np

    if h is None:
        return None
    x0, y0, x1, y1 = box
    corners = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).reshape(-1, 1, 2)
    m = h if then is None else then @ h
    pts = cv2.perspectiveTransform(corners, m.astype(np.float64)).reshape(4, 2)
    if not np.all(np.isfinite(pts)):
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]


class Identifier:
    """Identify photos against one index; load once, call :meth:`identify` many times."""

    def __init__(self, store: "IndexStore", settings: dict[str, Any] | None = None) -> None:
        from cover_id.config import DEFAULTS
        from cover_id.plugins import instantiate, load
        from cover_id.runtime import set_threads

        self.settings = {**DEFAULTS, **(settings or {})}
        set_threads(self.settings.get("threads"))
        self.store = store
        self.encoder = store.create_encoder({"device": self.settings.get("device")})
        detector_options = {"max_side": self.settings["detect_side"]} if self.settings.get("detect_side") else {}
        self.detector = instantiate(load("detectors", self.settings.get("detector", "quad")), **detector_options)
        self.reranker = load("rerankers", self.settings.get("reranker", "geometric"))()
        self.thresholds = self._thresholds()
        self._executor: "ThreadPoolExecutor | None" = None

    def _pool(self) -> "ThreadPoolExecutor":
        """Threads for verifying candidates, as many as the thread budget."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            from cover_id.runtime import thread_count

            self._executor = ThreadPoolExecutor(thread_count(self.settings.get("threads")), "cover-id-verify")
        return self._executor

    @classmethod
    def from_index(cls, path: Path, settings: dict[str, Any] | None = None) -> "Identifier":
        from cover_id.index_store import IndexStore

        return cls(IndexStore.open(path), settings)

    def _thresholds(self) -> "Thresholds":
        """Flags/config override the index's calibration, which overrides the defaults."""
        from cover_id.rerankers.geometric import Thresholds

        names = {f.name for f in fields(Thresholds)}
        values: dict[str, Any] = {}
        calibration = self.store.manifest.get("calibration") or {}
        values.update({k: v for k, v in calibration.items() if k in names and v is not None})
        values.update({k: self.settings[k] for k in names if self.settings.get(k) is not None})
        return Thresholds(**values)

    def threshold_source(self) -> str:
        if any(self.settings.get(k) is not None for k in ("accept_score", "review_score")):
            return "settings"
        return "calibration" if self.store.manifest.get("calibration") else "defaults"

    # ---- building blocks --------------------------------------------------------------
    def read(self, source: "str | Path | bytes | np.ndarray", max_side: int | None = None) -> "tuple[np.ndarray, float]":
        """The photo at processing size, and the factor back to its original pixels."""
        import numpy as np

        from cover_id.imageio import image_size, read_image

        if isinstance(source, np.ndarray):
            return source, 1.0
        max_side = int(max_side or self.settings["max_side"])
        image = read_image(source, max_side=max_side)
        w0, _ = image_size(source)
        return image, w0 / image.shape[1]

    def features(self, image: "np.ndarray", multi: bool = False) -> "Features":
        """One RootSIFT pass; --multi looks closer (several covers share the keypoint budget)."""
        from cover_id.features import extract_features

        if multi:
            return extract_features(image, max_side=1024, max_features=3000)
        return extract_features(image)

    def embed(self, images: "list[np.ndarray]", feats: "list[Features]", store: "IndexStore | None" = None) -> "np.ndarray":
        """Index-space vectors (reuses extracted features when the encoder can)."""
        if hasattr(self.encoder, "encode_features"):
            raw = self.encoder.encode_features(feats)  # type: ignore[attr-defined]
        else:
            raw = self.encoder.encode_images(images)
        return (store or self.store).embed(raw)

    def search(self, vectors: "np.ndarray", k: int, store: "IndexStore | None" = None) -> list[list[tuple[int, float]]]:
        scores, idx = (store or self.store).search(vectors, k)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(idx, scores)]

    @staticmethod
    def _describe(store: "IndexStore", m: "GeomMatch | None", cosines: dict[int, float]) -> dict[str, Any] | None:
        if m is None:
            return None
        return {
            **store.records[m.ref_index],
            "cosine": round(cosines.get(m.ref_index, 0.0), 4),
            "geom_score": round(m.score, 4),
            "inliers": m.inliers,
        }

    # ---- one photo ---------------------------------------------------------------------
    def identify(
        self,
        source: "str | Path | bytes | np.ndarray",
        name: str | None = None,
        multi: bool = False,
        export_crop: Path | None = None,
        export_debug: Path | None = None,
        trace: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON object for one photo (see the README for every field).

        ``trace``, if given, receives what the decision was made from (single
        cover mode): ``image`` (as processed), ``vectors`` (query vectors of the
        views), ``variants`` (per view: candidates best first, their cosines).
        """
        store = self.store  # one snapshot: the collection may change (serve) while we work
        t_all = time.perf_counter()
        timings: dict[str, float] = {"decode": 0.0, "detect": 0.0, "features": 0.0, "embed": 0.0, "search": 0.0, "rerank": 0.0}
        label = name or (str(source) if isinstance(source, (str, Path)) else "image")
        t = time.perf_counter()
        image, back = self.read(source)
        timings["decode"] = _ms(t)

        t = time.perf_counter()
        quads = self.detector.detect(image, max_quads=MAX_QUADS if multi else 1)
        timings["detect"] = _ms(t)

        t = time.perf_counter()
        full = _View.whole(self.features(image, multi), image)
        timings["features"] = _ms(t)

        if multi:
            results = self._identify_multi(store, image, full, quads, back, timings)
        else:
            views = [_View.crop(full, image, quads[0])] if quads else []
            views.append(full)
            look: dict[str, Any] = {"image": image}
            results = [self._identify_views(store, full, views, quads[0] if quads else None, back, timings, look)]
            if results[0]["decision"] != "accept" and self.settings.get("second_look", True):
                t = time.perf_counter()
                closer_look: dict[str, Any] = {}
                closer = self._second_look(store, source, image, back, quads, timings, closer_look)
                timings["second_look"] = _ms(t)
                if closer is not None and closer[0]["geom_score"] > results[0]["geom_score"]:
                    results, image, back, quads = [closer[0]], closer[1], closer[2], closer[3]
                    look = {**closer_look, "image": image}
            if trace is not None:
                trace.update(look)

        exports: dict[str, str] = {}
        if export_crop is not None:
            import cv2

            crop_img = self._crop_for_export(image, results[0] if results else None, quads, back)
            if not cv2.imwrite(str(export_crop), crop_img):
                raise CoverIdError(f"cannot write {export_crop}")
            exports["crop"] = str(export_crop)
        if export_debug is not None:
            self._write_debug(image, results, back, Path(export_debug))
            exports["debug"] = str(export_debug)
        timings["total"] = _ms(t_all)
        h, w = image.shape[:2]
        meta = {"image_size": [round(w * back), round(h * back)], "exports": exports, "timings_ms": timings}
        if multi:
            return {"input": label, "multi": True, "count": len(results), "covers": results, **meta}
        return {"input": label, **results[0], **meta}

    def _second_look(
        self,
        store: "IndexStore",
        source: Any,
        image: "np.ndarray",
        back: float,
        quads: list,
        timings: dict[str, float],
        look: dict[str, Any],
    ) -> "tuple[dict[str, Any], np.ndarray, float, list] | None":
        """No confident answer at the usual size: look again with more pixels and keypoints.

        Small covers in large photos (a card on a table) have too few keypoints at
        the first look's resolution. Only photos that were not accepted pay for this.
        """
        import numpy as np

        from cover_id.detectors.quad import Quad
        from cover_id.features import extract_features

        side = int(self.settings.get("second_look_side", SECOND_LOOK_SIDE))
        if isinstance(source, np.ndarray):
            hi, hback = source, 1.0
        else:
            hi, hback = self.read(source, max_side=side)
        if max(hi.shape[:2]) < 1.25 * max(image.shape[:2]):
            return None  # the photo has no more pixels to give
        factor = back / hback
        hquads = [Quad(q.corners * np.float32(factor), q.score, q.area_frac) for q in quads]
        full = _View.whole(extract_features(hi, max_side=side, max_features=SECOND_LOOK_FEATURES), hi)
        views = [_View.crop(full, hi, hquads[0])] if hquads else []
        views.append(full)
        result = self._identify_views(store, full, views, hquads[0] if hquads else None, hback, timings, look)
        return result, hi, hback, hquads

    def _identify_views(
        self,
        store: "IndexStore",
        photo: "_View",
        views: "list[_View]",
        quad: Any,
        back: float,
        timings: dict[str, float],
        look: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Retrieve for every view, verify the fused shortlist in every view, decide.

        ``photo`` is the whole photo's view: every view's ``local`` indexes its keypoints.
        """
        import numpy as np

        from cover_id.features import desc_float

        t = time.perf_counter()
        images = [] if hasattr(self.encoder, "encode_features") else [v.image() for v in views]
        vectors = self.embed(images, [v.feats for v in views], store)
        timings["embed"] += _ms(t)

        t = time.perf_counter()
        k = int(self.settings["top_k"])
        hits = self.search(vectors, k, store)
        widest = max(views, key=lambda v: len(v.feats))
        votes = store.voter().shortlist(widest.feats, top=k) if store.has_voter else []
        rankings = [[i for i, _ in votes]] + [[i for i, _ in row] for row in hits]
        shortlist = _fuse(rankings, int(self.settings["rerank_k"]))
        view_cos = np.asarray(vectors, np.float32) @ store.embeddings[shortlist].T if shortlist else None
        timings["search"] += _ms(t)

        t = time.perf_counter()
        qdesc = desc_float(photo.feats.desc)
        per_view: list[list[Any]] = [[] for _ in views]
        pairs = [(v.feats, v.local) for v in views]
        reranker = self.reranker

        def verify(i: int) -> "list[GeomMatch]":
            return reranker.match_views(qdesc, pairs, store.features[i], i)

        # Matching and RANSAC release the GIL: candidates are verified in parallel.
        for matches in self._pool().map(verify, shortlist):
            for bucket, m in zip(per_view, matches):
                bucket.append(m)
        for bucket in per_view:
            bucket.sort(key=lambda m: (-m.score, -m.inliers, m.ref_index))
        timings["rerank"] += _ms(t)
        variants = {
            v.name: (ranked, {i: float(view_cos[vi, j]) for j, i in enumerate(shortlist)} if shortlist else {})
            for vi, (v, ranked) in enumerate(zip(views, per_view))
        }
        if look is not None:
            look.update(vectors=vectors, variants=variants)
        return self._decide(store, variants, quad, views, back)

    def _identify_multi(
        self, store: "IndexStore", image: "np.ndarray", full: "_View", quads: list, back: float, timings: dict[str, float]
    ) -> list[dict[str, Any]]:
        """Every recognised cover: identify, explain its keypoints away, repeat."""
        import numpy as np

        found: list[dict[str, Any]] = []
        remaining = np.ones(len(full.feats), bool)
        for _ in range(MAX_QUADS):
            if remaining.sum() < 8:
                break
            view = full.subset(remaining)
            r = self._identify_views(store, full, [view], None, back, timings)
            if r["decision"] == "reject" or r["match_quad"] is None:
                break
            outline = np.float32(r["match_quad"]) / back
            inside = _inside(full.feats.xy, outline)
            if not (inside & remaining).any():
                break
            remaining &= ~inside
            if r["match"]["id"] in {f["match"]["id"] for f in found}:
                continue
            quad = _best_overlap(quads, outline)
            r["quad"] = [[round(float(x) * back, 1), round(float(y) * back, 1)] for x, y in quad.corners] if quad else r["match_quad"]
            r["quad_source"] = "detector" if quad else "homography"
            found.append(r)
        return found

    def _decide(
        self,
        store: "IndexStore",
        variants: "dict[str, tuple[list[GeomMatch], dict[int, float]]]",
        quad: Any,
        views: "list[_View]",
        back: float,
    ) -> dict[str, Any]:
        """Pick the variant with the stronger geometric evidence and decide."""
        import numpy as np

        ordered, decision = choose(store, variants, self.thresholds)
        strategy, (ranked, cosines) = ordered[0]
        best = ranked[0] if ranked else None
        quad_pts = None
        if quad is not None:
            quad_pts = [[round(float(x) * back, 1), round(float(y) * back, 1)] for x, y in quad.corners]
        match_quad = None
        if best is not None and best.homography is not None:
            box = content_box(store.features[best.ref_index])
            view = next(v for v in views if v.name == strategy)
            match_quad = _project(best.homography, box, np.diag([back, back, 1.0]) @ view.to_photo)
        other = None
        if len(ordered) > 1:
            o_name, (o_ranked, o_cos) = ordered[1]
            o_best = o_ranked[0] if o_ranked else None
            other = {
                "strategy": o_name,
                "match_id": store.records[o_best.ref_index]["id"] if o_best else None,
                "cosine": round(o_cos.get(o_best.ref_index, 0.0), 4) if o_best else None,
                "geom_score": round(o_best.score, 4) if o_best else 0.0,
                "inliers": o_best.inliers if o_best else 0,
            }
        alts = [self._describe(store, m, cosines) for m in ranked[1 : 1 + N_ALTERNATIVES]]
        quad_source = "detector" if quad_pts else None
        if quad_pts is None and match_quad is not None and decision != "reject":
            quad_pts, quad_source = match_quad, "homography"  # no outline found: the verified one
        return {
            "decision": decision,
            "confident": decision == "accept",
            "strategy": strategy,
            "cosine": round(cosines.get(best.ref_index, 0.0), 4) if best else None,
            "geom_score": round(best.score, 4) if best else 0.0,
            "inliers": best.inliers if best else 0,
            "match": self._describe(store, best, cosines),
            "alternatives": alts,
            "quad": quad_pts,
            "quad_source": quad_source,
            "match_quad": match_quad,
            "other_variant": other,
        }

    def _crop_for_export(self, image: "np.ndarray", result: dict[str, Any] | None, quads: list, back: float) -> "np.ndarray":
        """The verified outline warped upright at the reference's aspect, else the detected quad, else the photo."""
        import cv2
        import numpy as np

        from cover_id.detectors.quad import rectify

        if result and result.get("match_quad") and result["decision"] != "reject":
            src = np.float32(result["match_quad"]) / back
            ref = self.store.index_of(result["match"]["id"])
            x0, y0, x1, y1 = content_box(self.store.features[ref]) if ref is not None else (0, 0, 640, 640)
            w, h = x1 - x0, y1 - y0
            scale = min(1.0, 640 / max(w, h))
            w, h = max(8, round(w * scale)), max(8, round(h * scale))
            dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
            return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR)
        return rectify(image, quads[0].corners) if quads else image

    def _write_debug(self, image: "np.ndarray", results: list[dict[str, Any]], back: float, path: Path) -> None:
        import cv2
        import numpy as np

        out = image.copy()
        thick = max(2, round(max(out.shape[:2]) / 400))
        for r in results:
            colour = {"accept": (0, 200, 0), "review": (0, 190, 255), "reject": (0, 0, 230)}[r["decision"]]
            if r.get("quad"):
                pts = (np.array(r["quad"]) / back).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(out, [pts], True, (255, 160, 0), thick, cv2.LINE_AA)
            if r.get("match_quad"):
                pts = (np.array(r["match_quad"]) / back).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(out, [pts], True, colour, thick, cv2.LINE_AA)
            if r.get("match"):
                anchor = (np.array((r.get("match_quad") or r.get("quad") or [[10, 30]])[0]) / back).astype(int)
                text = f"{r['decision']}: {r['match']['name']} ({r['geom_score']:.2f})"
                cv2.putText(out, text, (int(anchor[0]) + 4, max(20, int(anchor[1]) - 8)),
                            cv2.FONT_HERSHEY_SIMPLEX, thick * 0.35, colour, max(1, thick // 2), cv2.LINE_AA)  # fmt: skip
        if not cv2.imwrite(str(path), out):
            raise CoverIdError(f"cannot write {path}")

    # ---- many photos -------------------------------------------------------------------
    def identify_many(self, sources: Iterable[Path], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """One result per photo in order; a bad file yields ``{"input", "error"}`` and the batch goes on."""
        for src in sources:
            try:
                yield self.identify(src, **kwargs)
            except CoverIdError as exc:
                yield {"input": str(src), "decision": "error", "confident": False, "error": str(exc)}

    # ---- embedding-only search (serve) -----------------------------------------------
    def search_by_image(self, source: "str | Path | bytes | np.ndarray", k: int = 10) -> list[dict[str, Any]]:
        store = self.store
        image, _ = self.read(source)
        vec = self.embed([image], [self.features(image)], store)
        return [{**store.records[i], "cosine": round(s, 4)} for i, s in self.search(vec, k, store)[0]]

    def search_by_text(self, query: str, k: int = 10) -> list[dict[str, Any]]:
        if not hasattr(self.encoder, "encode_text"):
            raise CoverIdError(
                f"encoder '{self.encoder.name}' has no text tower; text search needs an index built with --encoder clip"
            )
        store = self.store
        vec = store.embed(self.encoder.encode_text([query]))  # type: ignore[attr-defined]
        return [{**store.records[i], "cosine": round(s, 4)} for i, s in self.search(vec, k, store)[0]]
