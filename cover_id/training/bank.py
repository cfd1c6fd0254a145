"""The bank: every reference's augmented views, encoded once (the slow part on a CPU)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cover_id.encoders import encode_references
from cover_id.imageops import shrink

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder

VIEW_SIDE = 640  # views are made from references shrunk to this (query crops are <= 640 px too)


@dataclass
class Bank:
    """Encoded vectors of every reference (clean + augmented views) and held-out photo-like views."""

    vectors: np.ndarray  # (R, D) raw encoder vectors
    labels: np.ndarray  # (R,) reference row
    clean: np.ndarray  # (R,) True for the unaugmented reference vector
    holdout: np.ndarray  # (H, D) photo-like views kept aside
    holdout_labels: np.ndarray
    seconds: float = 0.0

    @property
    def references(self) -> np.ndarray:
        """(N, D) clean reference vectors, in reference order."""
        import numpy as np

        order = np.argsort(self.labels[self.clean], kind="stable")
        return self.vectors[self.clean][order]


def build_bank(
    encoder: Encoder,
    load: Callable[[int], np.ndarray],
    n: int,
    clean: np.ndarray | None,
    views: int,
    holdout: int,
    seed: int,
    show_progress: bool = False,
) -> Bank:
    """Encode every reference's views once.

    ``load(i)`` returns reference ``i`` (BGR); ``clean`` are the vectors the
    index holds for them (None: encode the loaded images). Every view comes
    from its own RNG seeded by (seed, reference, view), so the bank is the
    same whatever the order or batch size.
    """
    import numpy as np

    from cover_id.evaluate.photos import photo_view
    from cover_id.evaluate.synth import AugmentOptions, photo_augment
    from cover_id.progress import progress

    t0 = time.perf_counter()
    opts = AugmentOptions.train()
    vecs, labels, is_clean, hold, hold_labels = [], [], [], [], []
    with progress(n, "encoding views", show_progress) as advance:
        for i in range(n):
            image = load(i)
            small = shrink(image, VIEW_SIDE, min_side=8)
            batch = [photo_augment(small, np.random.default_rng([seed, i, v]), 1.0, opts) for v in range(views)]
            batch += [photo_view(small, np.random.default_rng([seed, 7919, i, v])) for v in range(holdout)]
            if clean is None:
                batch.append(image)
            out = encode_references(encoder, batch)
            ref_vec = clean[i] if clean is not None else out[-1]
            vecs.append(ref_vec[None, :])
            vecs.append(out[:views])
            labels.extend([i] * (views + 1))
            is_clean.extend([True] + [False] * views)
            hold.append(out[views : views + holdout])
            hold_labels.extend([i] * holdout)
            advance()
    d = int(vecs[0].shape[1])
    return Bank(
        vectors=np.ascontiguousarray(np.vstack(vecs), dtype=np.float32),
        labels=np.asarray(labels, np.int64),
        clean=np.asarray(is_clean, bool),
        holdout=np.vstack(hold).astype(np.float32) if hold else np.zeros((0, d), np.float32),
        holdout_labels=np.asarray(hold_labels, np.int64),
        seconds=time.perf_counter() - t0,
    )
