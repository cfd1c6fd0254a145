"""Where training gets its references: an existing index, or a folder built like `cover-id index`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.encoders import encode_references
from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder


@dataclass
class TrainSource:
    encoder: Encoder
    spec: dict[str, Any]  # recorded in the head; compared when an index applies it
    n: int
    load: Callable[[int], np.ndarray]
    clean: np.ndarray | None
    describe: str


def source_from_index(index: Path, device: str | None = None) -> TrainSource:
    """The index's own encoder (with its fitted codebook) and its stored reference vectors."""
    import numpy as np

    from cover_id.errors import ImageError
    from cover_id.imageio import read_image
    from cover_id.index.build import REF_MAX_SIDE
    from cover_id.index.store import IndexStore

    store = IndexStore.open(Path(index))
    if store.size < 2:
        raise CoverIdError(f"index {index} holds {store.size} reference(s); training needs at least 2")
    encoder = store.create_encoder({"device": device} if device else None)

    def load(i: int) -> np.ndarray:
        try:
            return read_image(store.image_path(i), max_side=REF_MAX_SIDE)
        except ImageError as exc:
            raise CoverIdError(
                f"reference image of '{store.records[i]['id']}' cannot be read ({exc}); was the refs folder moved?"
            ) from None

    return TrainSource(
        encoder, dict(store.encoder_spec), store.size, load, np.asarray(store.raw_embeddings), f"index {index}"
    )


def source_from_refs(refs: Path, settings: dict[str, Any], show_progress: bool = False) -> TrainSource:
    """A folder of references: the encoder is built (and, for ``local``, fitted) exactly as `cover-id index` would."""

    from cover_id.config import DEFAULTS
    from cover_id.encoders import create_encoder, resolve_encoder_name
    from cover_id.errors import ImageError
    from cover_id.features import extract_features
    from cover_id.imageio import read_image
    from cover_id.index.build import REF_MAX_SIDE, load_catalog
    from cover_id.progress import progress

    s = {**DEFAULTS, **settings}
    catalog, _, _ = load_catalog(Path(refs), None)
    name, _ = resolve_encoder_name(s["encoder"], s["model"], s["pretrained"])
    encoder = create_encoder(
        name, model=s["model"], pretrained=s["pretrained"], device=s["device"], batch_size=s["batch_size"]
    )
    paths = []
    for ref in catalog:
        if ref.path.is_file() and ref.path.stat().st_size > 0:
            paths.append(ref.path)
    clean = None
    if encoder.fittable:
        feats, ok = [], []
        with progress(len(paths), "reading references", show_progress) as advance:
            for p in paths:
                try:
                    feats.append(extract_features(read_image(p, max_side=REF_MAX_SIDE)))
                    ok.append(p)
                except ImageError:
                    pass
                advance()
        paths = ok
        if len(paths) < 2:
            raise CoverIdError(f"{refs}: training needs at least 2 readable reference images")
        encoder.fit_features(feats)
        clean = encode_references(encoder, [], features=feats)
    elif len(paths) < 2:
        raise CoverIdError(f"{refs}: training needs at least 2 reference images")

    def load(i: int) -> np.ndarray:
        return read_image(paths[i], max_side=REF_MAX_SIDE)

    spec = {**encoder.spec(), "dim": encoder.dim}
    return TrainSource(encoder, spec, len(paths), load, clean, f"folder {refs}")
