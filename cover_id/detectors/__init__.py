"""Cover detectors: find the cover in a photo so it can be warped flat (contract: :mod:`.base`)."""

from cover_id.detectors.base import Detector, Quad
from cover_id.detectors.quad import QuadDetector, draw_quads, order_corners, rectify

__all__ = ["Detector", "Quad", "QuadDetector", "draw_quads", "order_corners", "rectify"]
