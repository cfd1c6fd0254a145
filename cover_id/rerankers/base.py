"""The re-ranker plugin contract.

A re-ranker verifies shortlisted references against the photo and scores how
surely each one appears in it. Subclass :class:`Reranker`, implement
:meth:`match_views`, register the class in the ``cover_id.rerankers``
entry-point group and select it with the ``reranker`` setting.

The scores mean what the re-ranker says they mean, so the re-ranker also
names the :class:`~cover_id.identify.decide.DecisionPolicy` that turns them
into accept / review / reject (:meth:`Reranker.policy`); the default is the
threshold policy calibrated for geometric scores in 0..1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features
    from cover_id.identify.decide import DecisionPolicy, Thresholds


@dataclass
class GeomMatch:
    """How one reference was found in one view of the photo."""

    ref_index: int
    matches: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    spread: float = 0.0
    homography: "np.ndarray | None" = None  # 3x3, reference pixels -> view pixels
    sane: bool = False
    score: float = 0.0  # 0..1, what the decision policy thresholds
    cells: int = 0  # grid cells of the reference holding at least one inlier
    detail: dict[str, Any] = field(default_factory=dict, repr=False)


class Reranker(ABC):
    """Verifies candidates in several views of one photo with one matching pass."""

    name: ClassVar[str] = "reranker"

    @abstractmethod
    def match_views(
        self, qdesc: "np.ndarray", views: "list[tuple[Features, np.ndarray]]", ref: "Features", ref_index: int
    ) -> list[GeomMatch]:
        """One :class:`GeomMatch` per view for reference ``ref_index``.

        ``qdesc`` are the photo's float RootSIFT rows; each view is (its features,
        an array mapping every photo keypoint to the view's keypoint, -1 outside).
        """

    def match(self, query: "Features", ref: "Features", ref_index: int = -1) -> GeomMatch:
        """Verify one reference against the whole of ``query`` (one view)."""
        import numpy as np

        from cover_id.features import desc_float

        whole = np.arange(len(query), dtype=np.int64)
        return self.match_views(desc_float(query.desc), [(query, whole)], ref, ref_index)[0]

    def policy(self, thresholds: "Thresholds") -> "DecisionPolicy":
        """The decision policy for this re-ranker's scores (thresholds from flags, calibration or defaults)."""
        from cover_id.identify.decide import ThresholdPolicy

        return ThresholdPolicy(thresholds)
