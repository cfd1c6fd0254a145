"""The identify recipe: photo -> cover quad -> views -> candidates -> geometry -> decision.

One :class:`Identifier` loads the index, encoder, detector and re-ranker once
and answers many photos. Each step is a module of this package:

1. decode at a bounded size (``max_side``; reduced-resolution JPEG decoding),
2. detect the cover outline (the ``detector`` plugin),
3. :mod:`~cover_id.identify.views`: one RootSIFT pass, seen as the rectified
   cover ("crop") and the whole photo ("full"),
4. :mod:`~cover_id.identify.retrieve`: embed the views, search the index, add
   the references voted for by the photo's keypoints, rank-fuse,
5. :mod:`~cover_id.identify.verify`: verify the shortlist geometrically in
   every view (the ``reranker`` plugin),
6. :mod:`~cover_id.identify.decide`: pick the view with the stronger evidence
   and decide accept / review / reject; a photo not accepted gets a second,
   closer look at ``second_look_side`` px,
7. :mod:`~cover_id.identify.result` shapes the JSON, :mod:`~cover_id.identify.export`
   writes crops and debug images, :mod:`~cover_id.identify.multi` finds several covers.

Per-photo state travels as one :class:`~cover_id.identify.result.Photo`.

With a budget of two threads or more, steps that do not depend on each other
run side by side on the Identifier's pool: the outline search beside RootSIFT,
the keypoint votes beside the embedding and the vector search, and the vector
search's best candidates are verified while the votes are counted. The answer
is the same as with one thread, which runs everything in turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError
from cover_id.identify.result import Photo, Source, error_result, ms_since, photo_result

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from cover_id.config import Settings
    from cover_id.detectors.base import Detector, Quad
    from cover_id.encoders.base import Encoder
    from cover_id.features import Features
    from cover_id.identify.decide import DecisionPolicy, Thresholds
    from cover_id.identify.verify import Verifier
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import Reranker

SECOND_LOOK_FEATURES = 3000
# A photo not accepted first gets a wider look: each retrieval list WIDER_DEPTH times top_k deep (the compact
# index re-scores as many more), WIDER_VERIFY times rerank_k candidates verified (the same keypoints and
# vectors; the first look's candidates are not verified again), before any closer look. In a large collection
# a cover can rank just past the usual lists when its photo has few keypoints or votes: at 50,000 references
# one DVD photo's cover was 8th among 200 re-scored vector candidates but not among 50, and one painting
# photo's (behind glass, 320 keypoints) 16th by votes only. Only photos that were not accepted pay for it.
WIDER_DEPTH = 4
WIDER_VERIFY = 2


class Identifier:
    """Identify photos against one index; load once, call :meth:`identify` many times.

    ``store`` may be replaced while serving (a new collection snapshot); each
    call works on the snapshot it started with.
    """

    def __init__(self, store: "IndexStore", settings: "Mapping[str, Any] | Settings | None" = None) -> None:
        from cover_id.config import Settings
        from cover_id.plugins import create
        from cover_id.runtime import one_blas_thread, set_threads

        self.config = settings if isinstance(settings, Settings) else Settings.from_mapping(settings or {})
        self.settings: dict[str, Any] = self.config.as_dict()  # the same values, for code that reads a dict
        set_threads(self.config.threads)
        one_blas_thread()  # the parallelism is this Identifier's pool (steps and candidates side by side)
        self.store = store
        self.encoder: Encoder = store.create_encoder({"device": self.config.device})
        detector_options = {"max_side": self.config.detect_side} if self.config.detect_side else {}
        self.detector: Detector = create("detectors", self.config.detector, **detector_options)
        self.reranker: Reranker = create("rerankers", self.config.reranker)
        self.thresholds = self._thresholds()
        self.policy: DecisionPolicy = self.reranker.policy(self.thresholds)
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_index(cls, path: Path, settings: "Mapping[str, Any] | Settings | None" = None) -> "Identifier":
        from cover_id.index.store import IndexStore

        return cls(IndexStore.open(path), settings)

    def _thresholds(self) -> "Thresholds":
        """Flags/config override the index's calibration, which overrides the defaults."""
        from dataclasses import fields

        from cover_id.identify.decide import Thresholds

        names = {f.name for f in fields(Thresholds)}
        calibration = self.store.manifest.get("calibration") or {}
        values = {k: v for k, v in calibration.items() if k in names and v is not None}
        values.update({k: self.settings[k] for k in names if self.settings.get(k) is not None})
        return Thresholds(**values)

    def threshold_source(self) -> str:
        if self.config.accept_score is not None or self.config.review_score is not None:
            return "settings"
        return "calibration" if self.store.manifest.get("calibration") else "defaults"

    def _pool(self) -> "ThreadPoolExecutor":
        """Threads for the steps that run side by side and for verifying candidates, as many as the thread budget.

        Work on the pool never waits for the pool, so callers sharing it (serve's request threads) cannot deadlock.
        """
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            from cover_id.runtime import thread_count, worker_init

            n = thread_count(self.config.threads)
            self._executor = ThreadPoolExecutor(n, "cover-id", initializer=worker_init, initargs=(n,))
        return self._executor

    def _overlap(self) -> bool:
        """Whether independent steps run side by side (a budget of one thread runs everything in turn)."""
        from cover_id.runtime import thread_count

        return thread_count(self.config.threads) > 1

    def _split_pool(self) -> "ThreadPoolExecutor | None":
        """The pool that describes the second half of a photo while this thread describes the first
        (:func:`~cover_id.identify.views.photo_features`), or None with a budget of one thread."""
        return self._pool() if self._overlap() else None

    def _detect_and_extract(self, photo: Photo, multi: bool) -> "Features":
        """Find the cover outline(s) into ``photo.quads`` and return the photo's keypoints.

        The two do not depend on each other and are OpenCV work that releases the GIL, so with two
        threads the outline is searched on the pool while this thread runs RootSIFT. Each is timed
        on its own ("detect", "features"): their sum is more than the time they took together.
        """
        import time

        from cover_id.identify.multi import MAX_QUADS
        from cover_id.identify.views import photo_features

        assert photo.image is not None
        image = photo.image

        def detect() -> "tuple[list[Quad], float]":
            t = time.perf_counter()
            return self.detector.detect(image, max_quads=MAX_QUADS if multi else 1), ms_since(t)

        job = self._pool().submit(detect) if self._overlap() else None
        if job is None:
            photo.quads, photo.timings["detect"] = detect()
        with photo.timed("features"):
            feats = photo_features(image, multi, pool=self._split_pool())
        if job is not None:
            photo.quads, photo.timings["detect"] = job.result()
        return feats

    # ---- the recipe --------------------------------------------------------------------
    def identify(
        self,
        source: Source,
        name: str | None = None,
        multi: bool = False,
        export_crop: Path | None = None,
        export_debug: Path | None = None,
        trace: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON object for one photo (see the README for every field).

        ``source`` is a path, encoded bytes or a BGR array: all three give the same
        answer. ``trace``, if given, receives what the decision was made from
        (single-cover mode, see :meth:`Photo.trace`).
        """
        import time

        from cover_id.identify import export
        from cover_id.identify.consistency import contradicted
        from cover_id.identify.multi import identify_multi
        from cover_id.identify.views import View, make_views

        store = self.store  # one snapshot: the collection may change (serve) while we work
        t_all = time.perf_counter()
        photo = Photo(source, name or (str(source) if isinstance(source, (str, Path)) else "image"))
        with photo.timed("decode"):
            photo.image, photo.back = self.read(source)
        feats = self._detect_and_extract(photo, multi)
        if multi:
            photo.full = View.whole(feats, photo.image)
            covers = identify_multi(photo, lambda p, views, quad: self._look(store, p, views, quad, single=False))
        else:
            photo.full, views = make_views(photo.image, feats, photo.quads[0] if photo.quads else None)
            quad = photo.quads[0] if photo.quads else None
            covers = [self._look(store, photo, views, quad)]
            if covers[0]["decision"] != "accept" and not contradicted(covers[0]):
                with photo.timed("wider_look"):  # the same look over more candidates: it supersedes the first
                    covers = [self._look(store, photo, views, quad, depth=WIDER_DEPTH, wider=WIDER_VERIFY)]
            if covers[0]["decision"] != "accept" and self.config.second_look and not contradicted(covers[0]):
                with photo.timed("second_look"):
                    closer = self._second_look(store, photo)
                if closer is not None and closer[1]["geom_score"] > covers[0]["geom_score"]:
                    photo, covers = closer[0], [closer[1]]
            if trace is not None:
                trace.update(photo.trace())

        exports: dict[str, str] = {}
        if export_crop is not None:
            exports["crop"] = export.write_image(export_crop, export.crop(store, photo, covers[0] if covers else None))
        if export_debug is not None:
            exports["debug"] = export.write_image(Path(export_debug), export.debug_image(photo, covers))
        photo.timings["total"] = ms_since(t_all)
        return photo_result(photo, covers, multi, exports, self.record())

    def _look(
        self,
        store: "IndexStore",
        photo: Photo,
        views: "list[View]",
        quad: "Quad | None",
        single: bool = True,
        depth: int = 1,
        wider: int = 1,
    ) -> dict[str, Any]:
        """Retrieve for every view, verify the fused shortlist in every view, decide: one cover's JSON.

        ``single``: one answer per photo (the most prominent cover; the others go to ``also_seen``).
        ``depth``: retrieve this many times ``top_k`` references per list; ``wider``: verify this many
        times ``rerank_k`` candidates. A look at the same views as the last one reuses their vectors and
        verifications.
        """
        from cover_id.identify import consistency, prominence, retrieve
        from cover_id.identify.decide import choose
        from cover_id.identify.items import collapse
        from cover_id.identify.result import cover_result
        from cover_id.identify.verify import Verifier

        assert photo.full is not None
        photo.views = views
        top_k = self.config.top_k * depth
        if photo.retrieved is not None and photo.retrieved[0] is views:  # a wider look at the same views
            verifier = photo.retrieved[1]
            hits, voted = self._retrieve(store, photo, views, top_k, None)
        else:
            verifier = Verifier(self.reranker, self._pool(), store, photo.full, views)
            hits, voted = self._retrieve(store, photo, views, top_k, verifier)
        photo.retrieved = (views, verifier)
        assert photo.vectors is not None
        with photo.timed("search"):
            limit = self.config.rerank_k * wider
            rows, cosines = retrieve.shortlist(store, views, photo.vectors, top_k, limit, voted, hits)
        with photo.timed("rerank"):
            photo.variants = verifier.candidates(rows, cosines)
            photo.variants = collapse(store, photo.variants)  # an item's best view carries it
        ordered, decision = choose(store, photo.variants, self.policy)
        with photo.timed("consistency"):
            others: list = []
            if single:  # the most prominent cover is the answer; the others are listed
                arranged, decision, others = prominence.arrange(store, photo, ordered, decision, self.policy)
                if arranged[0][1] is not ordered[0][1]:
                    quad = None  # the answer is not the detected outline's cover
                ordered = arranged
            ordered, decision, check = consistency.check(store, photo, ordered, decision, self.policy, quad)
        result = {**cover_result(store, photo, ordered, decision, quad), **check}
        if single:
            full_cosines = next((c.cosines for name, c in ordered if name == "full"), {})
            result["also_seen"] = prominence.also_seen(store, photo, others, full_cosines)
        return result

    def _retrieve(
        self, store: "IndexStore", photo: Photo, views: "list[View]", k: int, verifier: "Verifier | None"
    ) -> "tuple[list[list[tuple[int, float]]], list[tuple[int, float]]]":
        """The views' ``k`` nearest references by vector and the ``k`` most voted for (the views are embedded
        first when ``verifier`` is given: a first look, whose likeliest candidates it starts verifying).

        The keypoint votes need only the keypoints: they are counted beside the embedding and the
        vector search, and the likeliest candidates are verified while they are.
        """
        from cover_id.identify import retrieve

        voting = self._pool().submit(retrieve.votes, store, views, k) if self._overlap() else None
        if verifier is not None:
            with photo.timed("embed"):
                photo.vectors = retrieve.embed_views(self.encoder, store, views)
        assert photo.vectors is not None
        with photo.timed("search"):
            hits = retrieve.search(store, photo.vectors, k)
            if voting is not None:
                if verifier is not None:
                    verifier.start(retrieve.likely(hits))
                voted = voting.result()
            else:
                voted = retrieve.votes(store, views, k)
        return hits, voted

    def _second_look(self, store: "IndexStore", photo: Photo) -> "tuple[Photo, dict[str, Any]] | None":
        """No confident answer at the usual size: look again with more pixels and keypoints.

        Small covers in large photos (a card on a table) have too few keypoints at
        the first look's resolution. Only photos that were not accepted pay for this.
        """
        from cover_id.identify.views import make_views, photo_features

        assert photo.image is not None
        # Bound the pixels, not only the side: a square photo at 1600 x 1600 costs RootSIFT a third more
        # memory than a 4:3 one (1600 x 1200), which the server's per-upload memory bound does not allow.
        h, w = photo.image.shape[:2]
        side = min(
            self.config.second_look_side, int((self.config.second_look_side**2 * 0.75 * max(w, h) / min(w, h)) ** 0.5)
        )
        # The photo's longer side from the first read, rounded up generously: a photo surely too small for
        # a closer look is not decoded again only to find that out (otherwise the check after the read decides).
        if min(1.01 * photo.back * (max(w, h) + 2), side) < 1.25 * max(w, h):
            return None
        image, back = self.read(photo.source, max_side=side)
        if max(image.shape[:2]) < 1.25 * max(photo.image.shape[:2]):
            return None  # the photo has no more pixels to give
        closer = photo.closer(image, back)
        feats = photo_features(image, max_side=side, max_features=SECOND_LOOK_FEATURES, pool=self._split_pool())
        closer.full, views = make_views(image, feats, closer.quads[0] if closer.quads else None)
        return closer, self._look(store, closer, views, closer.quads[0] if closer.quads else None)

    def record(self) -> dict[str, Any]:
        """The preset and resolved settings this answer was made with (``settings`` in the JSON)."""
        from dataclasses import asdict

        from cover_id.config import identify_record

        return {
            **identify_record(self.config),
            "thresholds": {"source": self.threshold_source(), **asdict(self.thresholds)},
        }

    # ---- building blocks (also used by verify and serve) --------------------------------
    def read(self, source: Source, max_side: int | None = None) -> "tuple[np.ndarray, float]":
        """The photo at processing size (longer side <= ``max_side``), a dim one brightened
        (:func:`~cover_id.imageops.brighten_dim`), and the factor back to its original pixels."""
        import numpy as np

        from cover_id.imageio import read_sized
        from cover_id.imageops import brighten_dim, shrink

        max_side = int(max_side or self.config.max_side)
        if isinstance(source, np.ndarray):
            image = shrink(source, max_side)
            return brighten_dim(image), source.shape[1] / image.shape[1]
        image, (w0, _) = read_sized(source, max_side=max_side)
        return brighten_dim(image), w0 / image.shape[1]

    def features(self, image: "np.ndarray", multi: bool = False) -> "Features":
        """The photo's one RootSIFT pass (--multi looks closer: several covers share the keypoint budget)."""
        from cover_id.identify.views import photo_features

        return photo_features(image, multi, pool=self._split_pool())

    def embed(
        self, images: "list[np.ndarray]", feats: "list[Features]", store: "IndexStore | None" = None
    ) -> "np.ndarray":
        """Index-space vectors (reuses extracted features when the encoder supports them)."""
        from cover_id.identify.retrieve import embed

        return embed(self.encoder, store or self.store, images, feats)

    def search(self, vectors: "np.ndarray", k: int, store: "IndexStore | None" = None) -> list[list[tuple[int, float]]]:
        from cover_id.identify.retrieve import search

        return search(store or self.store, vectors, k)

    # ---- many photos, and embedding-only search (serve) ---------------------------------
    def identify_many(self, sources: Iterable[Path], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """One result per photo in order; a bad file yields ``{"input", "error"}`` and the batch goes on."""
        for src in sources:
            try:
                yield self.identify(src, **kwargs)
            except CoverIdError as exc:
                yield error_result(str(src), str(exc))

    def search_by_image(self, source: Source, k: int = 10) -> list[dict[str, Any]]:
        store = self.store
        image, _ = self.read(source)
        vec = self.embed([image], [self.features(image)], store)
        return _hits(store, self.search(vec, k, store)[0])

    def search_by_text(self, query: str, k: int = 10) -> list[dict[str, Any]]:
        if not self.encoder.supports_text:
            raise CoverIdError(
                f"encoder '{self.encoder.name}' has no text tower; text search needs an index built with --encoder clip"
            )
        store = self.store
        vec = store.embed(self.encoder.encode_text([query]))
        return _hits(store, self.search(vec, k, store)[0])


def _hits(store: "IndexStore", found: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """Search results as records with their cosine, each item once (its best view)."""
    from cover_id.identify.items import present, unique_items

    cosine = dict(found)
    return [{**present(store, i), "cosine": round(cosine[i], 4)} for i in unique_items(store, [i for i, _ in found])]
