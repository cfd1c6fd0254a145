"""Compatibility names: the identify pipeline now lives in :mod:`cover_id.identify`."""

from cover_id.identify.decide import choose
from cover_id.identify.decide import rival as _rival
from cover_id.identify.recipe import Identifier
from cover_id.identify.result import N_ALTERNATIVES
from cover_id.identify.retrieve import fuse as _fuse
from cover_id.identify.views import content_box

__all__ = ["Identifier", "N_ALTERNATIVES", "choose", "content_box", "_fuse", "_rival"]
