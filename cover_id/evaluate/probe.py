"""One query through the real identify pipeline, with what is needed to re-decide it offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cover_id.evaluate.photos import thumbnail

if TYPE_CHECKING:
    import numpy as np

    from cover_id.detectors.base import Quad
    from cover_id.identify.result import Photo
    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier
    from cover_id.rerankers.geometric import GeomMatch


@dataclass
class Probe:
    """One query through the pipeline, with what is needed to re-decide it offline."""

    label: str
    truth: int | None  # reference row, None: not in the collection
    result: dict[str, Any]
    sims: np.ndarray  # cosine to every reference (max over crop / full variants)
    variants: dict[str, list[GeomMatch]]
    thumb: bytes = b""
    kind: str = "photo"  # "selftest" or "photo"
    cosines: dict[str, dict[int, float]] = field(default_factory=dict)  # per variant, as the pipeline saw them
    store: IndexStore | None = None  # the IndexStore it was identified against (outlines for the rival rule)
    items: dict[int, int] = field(default_factory=dict)  # extra view's row -> its item's row (several images per item)
    photo: Photo | None = None  # the photo as identified (kept for labelled photos: the consistency step replays on it)
    quad: Quad | None = None  # the cover's detected outline the answer was checked against

    @property
    def replayable(self) -> bool:
        """Whether :func:`~cover_id.evaluate.redecide.redecide` can replay the consistency step too."""
        return self.photo is not None and self.store is not None and self.photo.image is not None

    def item(self, i: int) -> int:
        """The row that stands for the item reference row ``i`` is a view of (``i`` itself for most)."""
        return self.items.get(i, i)

    def cosine(self, variant: str, i: int) -> float:
        cos = self.cosines.get(variant)
        return cos.get(i, 0.0) if cos else float(self.sims[i])

    @property
    def match(self) -> int | None:
        ranked = self.variants.get(self.result.get("strategy") or "", [])
        return self.item(ranked[0].ref_index) if ranked else None

    def geom(self, i: int | None) -> float:
        """Best geometric score of reference ``i`` in any view (0 when it was not verified)."""
        return max((m.score for r in self.variants.values() for m in r if self.item(m.ref_index) == i), default=0.0)

    def best_wrong_geom(self) -> tuple[int | None, float]:
        best: tuple[int | None, float] = (None, -1.0)
        for ranked in self.variants.values():
            for m in ranked:
                if self.item(m.ref_index) != self.truth and m.score > best[1]:
                    best = (self.item(m.ref_index), m.score)
                    break  # ranked lists are sorted
        return best if best[0] is not None else (None, 0.0)

    def best_wrong_cos(self) -> tuple[int | None, float]:
        import numpy as np

        sims = self.sims.copy()
        if self.truth is not None:
            sims[self.truth] = -np.inf
        if not len(sims) or not np.isfinite(sims).any():
            return None, 0.0
        j = int(np.argmax(sims))
        return j, float(sims[j])

    def emb_rank(self) -> int | None:
        """0-based rank of the true reference by embedding alone."""
        if self.truth is None:
            return None
        return int((self.sims > self.sims[self.truth]).sum())

    def top5(self) -> bool:
        if self.truth is None:
            return False
        ranked = self.variants.get(self.result.get("strategy") or "", [])
        return any(self.item(m.ref_index) == self.truth for m in ranked[:5])

    def summary(self, store: IndexStore) -> dict[str, Any]:
        """JSON-able facts about this probe."""
        wrong_i, wrong_g = self.best_wrong_geom()
        _, wcos = self.best_wrong_cos()
        out: dict[str, Any] = {
            "input": self.label,
            "truth": store.records[self.truth]["id"] if self.truth is not None else None,
            "decision": self.result.get("decision"),
            "match": store.records[self.match]["id"] if self.match is not None else None,
            "correct": self.truth is not None and self.match == self.truth,
            "top5": self.top5(),
            "geom_score": self.result.get("geom_score", 0.0),
            "best_wrong": store.records[wrong_i]["id"] if wrong_i is not None else None,
            "best_wrong_geom": round(wrong_g, 4),
            "best_wrong_cosine": round(wcos, 4),
        }
        if self.truth is not None:
            out.update(
                correct_geom=round(self.geom(self.truth), 4),
                correct_cosine=round(float(self.sims[self.truth]), 4),
                margin_geom=round(self.geom(self.truth) - wrong_g, 4),
                margin_cosine=round(float(self.sims[self.truth]) - wcos, 4),
                embedding_rank=self.emb_rank(),
            )
        return out


class Prober:
    """Runs :meth:`Identifier.identify` and keeps what it decided from.

    The per-view candidate lists come from ``identify``'s ``trace``, so they are
    exactly what the pipeline saw; :func:`redecide` replays the same decision.
    """

    def __init__(self, identifier: Identifier) -> None:
        self.identifier = identifier

    def probe(
        self,
        source: Any,
        truth: int | None,
        label: str,
        kind: str = "photo",
        keep_thumb: bool = True,
        keep_photo: bool = False,
    ) -> Probe:
        """``keep_photo``: keep the photo (image, keypoints) so that re-deciding replays the consistency step
        (calibration); about 2 MB a photo."""
        import numpy as np

        trace: dict[str, Any] = {}
        store = self.identifier.store
        result = self.identifier.identify(source, name=label, trace=trace)
        vectors, image = trace.get("vectors"), trace.get("image")
        if vectors is not None and len(store.embeddings):
            sims = (np.asarray(vectors, np.float32) @ store.embeddings.T).max(axis=0)
        else:
            sims = np.zeros(store.size, np.float32)
        variants: dict[str, list] = {}
        cosines: dict[str, dict[int, float]] = {}
        for name, (ranked, cos) in trace.get("variants", {}).items():
            variants[name] = list(ranked)
            cosines[name] = dict(cos)
        thumb = thumbnail(image) if keep_thumb and image is not None else b""
        if truth is not None and store.has_views:  # a label naming one of an item's images names the item
            primary = store.index_of(store.item_keys([truth])[0])
            truth = truth if primary is None else primary
        photo = trace.get("photo") if keep_photo else None
        # the outline the answer was checked against: the detected one, unless the answer is another cover
        quad = photo.quads[0] if photo is not None and photo.quads and result.get("quad_source") == "detector" else None
        return Probe(
            label, truth, result, sims, variants, thumb, kind, cosines, store, _items(store, variants), photo, quad
        )


def _items(store: IndexStore, variants: dict[str, list]) -> dict[int, int]:
    """Rows among the candidates that are extra views of an item -> the row of the item (its primary view)."""
    if not store.has_views:
        return {}
    rows = sorted({m.ref_index for ranked in variants.values() for m in ranked})
    out = {}
    for row, key in zip(rows, store.item_keys(rows)):
        primary = store.index_of(key)
        if primary is not None and primary != row:
            out[row] = primary
    return out
