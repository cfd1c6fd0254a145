"""Cover detectors: find the cover in a photo so it can be warped flat."""

from cover_id.detectors.quad import Quad, QuadDetector, draw_quads, order_corners, rectify

__all__ = ["Quad", "QuadDetector", "draw_quads", "order_corners", "rectify"]
