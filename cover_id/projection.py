"""Moved to :mod:`cover_id.training.projection`; this name stays importable for existing callers."""

from cover_id.training.projection import FORMAT, Projection, load_projection, save_projection

__all__ = ["FORMAT", "Projection", "load_projection", "save_projection"]
