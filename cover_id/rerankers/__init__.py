"""Re-ranking of shortlisted references by geometric verification."""

from cover_id.rerankers.geometric import GeometricParams, GeometricReranker, GeomMatch, Thresholds, decide

__all__ = ["GeometricParams", "GeometricReranker", "GeomMatch", "Thresholds", "decide"]
