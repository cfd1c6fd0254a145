"""The detector plugin contract.

A detector finds the cover outline(s) in a photo so the cover can be warped
flat (the "crop" view). Subclass :class:`Detector`, implement :meth:`detect`,
and register the class in the ``cover_id.detectors`` entry-point group; select
it with the ``detector`` setting. Constructor keyword arguments are the
detector's options (``max_side`` comes from the ``detect_side`` setting).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Quad:
    """A detected cover outline in the coordinates of the detector's input image."""

    corners: "np.ndarray"  # (4, 2) float32, ordered TL, TR, BR, BL (see detectors.quad)
    score: float  # plausibility 0..1
    area_frac: float  # quad area / image area

    def scaled(self, factor: float) -> "Quad":
        """The same outline in an image ``factor`` times as large."""
        import numpy as np

        return Quad(self.corners * np.float32(factor), self.score, self.area_frac)


class Detector(ABC):
    """Finds cover quadrilaterals in a BGR photo."""

    name: ClassVar[str] = "detector"

    @abstractmethod
    def detect(self, image_bgr: "np.ndarray", max_quads: int = 1) -> list[Quad]:
        """Best-first plausible outlines (at most ``max_quads``), in the image's pixels; empty when none."""
