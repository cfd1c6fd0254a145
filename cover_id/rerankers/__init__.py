"""Re-ranking of shortlisted references by verification (contract: :mod:`.base`)."""

from cover_id.rerankers.base import GeomMatch, Reranker
from cover_id.rerankers.geometric import GeometricParams, GeometricReranker, Thresholds, decide

__all__ = ["GeometricParams", "GeometricReranker", "GeomMatch", "Reranker", "Thresholds", "decide"]
