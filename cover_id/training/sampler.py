"""K classes x M vectors per batch, every class once per epoch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np


class KMSampler:
    """Batches of K classes x M bank rows; every class once per epoch.

    ``labels`` gives each bank row's class; rows flagged in ``clean`` (the
    unaugmented reference vectors, which are what the index stores) are
    always among their class's M, so every batch pulls views towards them.
    Collections with fewer than K classes use all of them in every batch.
    """

    def __init__(
        self, labels: np.ndarray, k: int = 16, m: int = 4, seed: int = 0, clean: np.ndarray | None = None
    ) -> None:
        import numpy as np

        if k < 1 or m < 1:
            raise CoverIdError("K (classes per batch) and M (views per class) must be at least 1")
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        if len(self.classes) < 2:
            raise CoverIdError("training needs at least 2 references")
        self.k = min(int(k), len(self.classes))
        self.m = int(m)
        self.rng = np.random.default_rng(seed)
        clean = np.zeros(len(labels), bool) if clean is None else np.asarray(clean, bool)
        self._clean = {c: np.flatnonzero((labels == c) & clean) for c in self.classes}
        self._views = {c: np.flatnonzero((labels == c) & ~clean) for c in self.classes}

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.classes) / self.k)

    def epoch(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import numpy as np

        order = self.rng.permutation(self.classes)
        for s in range(self.steps_per_epoch):
            chunk = order[s * self.k : (s + 1) * self.k]
            if len(chunk) < self.k:  # top up the last batch with other classes
                rest = np.setdiff1d(self.classes, chunk)
                chunk = np.concatenate([chunk, self.rng.choice(rest, self.k - len(chunk), replace=False)])
            yield self.batch(chunk)

    def batch(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, labels), each of length len(classes) * M, grouped by class."""
        import numpy as np

        rows, labels = [], []
        for c in classes:
            picked: list[int] = []
            if len(self._clean[c]):
                picked.append(int(self.rng.choice(self._clean[c])))
            need = self.m - len(picked)
            pool = self._views[c] if len(self._views[c]) else self._clean[c]
            if need > 0:
                picked.extend(int(r) for r in self.rng.choice(pool, need, replace=len(pool) < need))
            rows.extend(picked[: self.m])
            labels.extend([c] * self.m)
        return np.asarray(rows, np.int64), np.asarray(labels)
