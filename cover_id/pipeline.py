"""The identify pipeline: photo -> cover quad -> candidates -> geometry -> decision.

One :class:`Identifier` loads the index, encoder, detector and re-ranker once
and answers many photos. Steps (each timed in ``timings_ms``):

1. decode at a bounded size (reduced-resolution JPEG decoding),
2. detect the largest plausible cover quad and rectify it ("crop"),
3. RootSIFT features of the crop and of the whole photo ("full"),
4. embed both, retrieve ``top_k`` candidates for each from FAISS, merge,
5. verify candidates geometrically against the cached reference keypoints,
6. pick the variant ("strategy") with the stronger evidence and decide
   accept / review / reject with thresholds from flags, the index's
   calibration, or the built-in defaults.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features
    from cover_id.index_store import IndexStore
    from cover_id.rerankers.geometric import GeomMatch, Thresholds

N_ALTERNATIVES = 5
MAX_QUADS = 6  # --multi looks for at most this many covers


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def _project(h: "np.ndarray | None", size: tuple[int, int], then: "np.ndarray | None" = None) -> list | None:
    """Reference corners through homography ``h`` (and optionally ``then``) -> 4 [x, y]."""
    import cv2
    import numpy as np

    if h is None:
        return None
    w, hgt = size
    corners = np.float32([[0, 0], [w, 0], [w, hgt], [0, hgt]]).reshape(-1, 1, 2)
    m = h if then is None else then @ h
    pts = cv2.perspectiveTransform(corners, m.astype(np.float64)).reshape(4, 2)
    if not np.all(np.isfinite(pts)):
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]


class Identifier:
    """Identify photos against one index; load once, call :meth:`identify` many times."""

    def __init__(self, store: "IndexStore", settings: dict[str, Any] | None = None) -> None:
        from cover_id.config import DEFAULTS
        from cover_id.plugins import load
        from cover_id.runtime import set_threads

        self.settings = {**DEFAULTS, **(settings or {})}
        set_threads(self.settings.get("threads"))
        self.store = store
        self.encoder = store.create_encoder({"device": self.settings.get("device")})
        self.detector = load("detectors", self.settings.get("detector", "quad"))()
        self.reranker = load("rerankers", self.settings.get("reranker", "geometric"))()
        self.thresholds = self._thresholds()

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
    def read(self, source: "str | Path | bytes | np.ndarray") -> "tuple[np.ndarray, float]":
        """The photo at processing size, and the factor back to its original pixels."""
        import numpy as np

        from cover_id.imageio import image_size, read_image

        if isinstance(source, np.ndarray):
            return source, 1.0
        max_side = int(self.settings["max_side"])
        image = read_image(source, max_side=max_side)
        w0, _ = image_size(source)
        return image, w0 / image.shape[1]

    def features(self, image: "np.ndarray") -> "Features":
        from cover_id.features import extract_features

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

    def _verify(self, store: "IndexStore", query: "Features", cosines: dict[int, float]) -> "list[GeomMatch]":
        cands = [(i, store.features[i]) for i in cosines]
        return self.reranker.rerank(query, cands)

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
    ) -> dict[str, Any]:
        """The JSON object for one photo (see the README for every field)."""
        import numpy as np

        from cover_id.detectors.quad import rectify

        store = self.store  # one snapshot: the collection may change (serve) while we work
        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        label = name or (str(source) if isinstance(source, (str, Path)) else "image")
        t = time.perf_counter()
        image, back = self.read(source)
        timings["decode"] = _ms(t)

        t = time.perf_counter()
        quads = self.detector.detect(image, max_quads=MAX_QUADS if multi else 1)
        timings["detect"] = _ms(t)

        t = time.perf_counter()
        full_feat = self.features(image)
        crops = [rectify(image, q.corners) for q in quads]
        crop_feats = [self.features(c) for c in crops]
        timings["features"] = _ms(t)

        t = time.perf_counter()
        vectors = self.embed(crops + [image], crop_feats + [full_feat], store)
        timings["embed"] = _ms(t)

        t = time.perf_counter()
        k = int(self.settings["top_k"])
        hits = self.search(vectors, k, store)
        timings["search"] = _ms(t)

        t = time.perf_counter()
        full_cos = dict(hits[-1])
        results = []
        targets = list(range(len(quads))) if multi else [0]
        for qi in targets:
            crop_cos = dict(hits[qi]) if qi < len(quads) else {}
            cosines = {i: max(crop_cos.get(i, -1.0), full_cos.get(i, -1.0)) for i in {**full_cos, **crop_cos}}
            variants: dict[str, tuple[list, dict[int, float]]] = {}
            if qi < len(quads):
                variants["crop"] = (self._verify(store, crop_feats[qi], cosines), crop_cos)
            if not multi or not quads:
                variants["full"] = (self._verify(store, full_feat, cosines), full_cos)
            quad = quads[qi] if qi < len(quads) else None
            results.append(self._decide(store, variants, cosines, quad, crops, qi, back))
        timings["rerank"] = _ms(t)

        exports: dict[str, str] = {}
        if export_crop is not None:
            import cv2

            crop_img = crops[0] if crops else image
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
            found = self._dedupe(results)
            return {"input": label, "multi": True, "count": len(found), "covers": found, **meta}
        return {"input": label, **results[0], **meta}

    def _decide(
        self,
        store: "IndexStore",
        variants: "dict[str, tuple[list[GeomMatch], dict[int, float]]]",
        cosines: dict[int, float],
        quad: Any,
        crops: list,
        qi: int,
        back: float,
    ) -> dict[str, Any]:
        """Pick the variant with the stronger geometric evidence and decide."""
        import cv2
        import numpy as np

        from cover_id.rerankers.geometric import decide

        def strength(item: tuple[str, tuple[list, dict]]) -> tuple[float, int, int]:
            ranked = item[1][0]
            best = ranked[0] if ranked else None
            return (best.score, best.inliers, item[0] == "crop") if best else (0.0, 0, item[0] == "crop")

        ordered = sorted(variants.items(), key=strength, reverse=True)
        strategy, (ranked, _) = ordered[0]
        best = ranked[0] if ranked else None
        second = ranked[1] if len(ranked) > 1 else None
        if best is None:
            decision = "reject"
        else:
            decision = decide(best, second, cosines.get(best.ref_index, 0.0), self.thresholds)
        quad_pts = None
        if quad is not None:
            quad_pts = [[round(float(x) * back, 1), round(float(y) * back, 1)] for x, y in quad.corners]
        match_quad = None
        if best is not None and best.homography is not None:
            size = store.features[best.ref_index].size
            scale = np.diag([back, back, 1.0])
            if strategy == "crop" and quad is not None:
                ch, cw = crops[qi].shape[:2]
                from cover_id.detectors.quad import order_corners

                dst = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
                to_photo = np.linalg.inv(cv2.getPerspectiveTransform(order_corners(quad.corners), dst))
                match_quad = _project(best.homography, size, scale @ to_photo)
            else:
                match_quad = _project(best.homography, size, scale)
        other = None
        if len(ordered) > 1:
            o_name, (o_ranked, _) = ordered[1]
            o_best = o_ranked[0] if o_ranked else None
            other = {
                "strategy": o_name,
                "match_id": store.records[o_best.ref_index]["id"] if o_best else None,
                "cosine": round(cosines.get(o_best.ref_index, 0.0), 4) if o_best else None,
                "geom_score": round(o_best.score, 4) if o_best else 0.0,
                "inliers": o_best.inliers if o_best else 0,
            }
        alts = [self._describe(store, m, cosines) for m in ranked[1 : 1 + N_ALTERNATIVES]]
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
            "match_quad": match_quad,
            "other_variant": other,
        }

    @staticmethod
    def _dedupe(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """--multi: one entry per recognised reference (the strongest), rejects dropped."""
        best: dict[str, dict[str, Any]] = {}
        for r in results:
            if r["match"] is None or r["decision"] == "reject":
                continue
            key = r["match"]["id"]
            if key not in best or r["geom_score"] > best[key]["geom_score"]:
                best[key] = r
        return sorted(best.values(), key=lambda r: -r["geom_score"])

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
