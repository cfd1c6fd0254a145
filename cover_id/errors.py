"""Errors a user can cause: printed as one line, never as a traceback."""

from __future__ import annotations


class CoverIdError(Exception):
    """A problem the user can fix; its message is shown as-is on one line."""


class ImageError(CoverIdError):
    """An image could not be read (missing, empty, corrupt, unsupported, too large)."""


class IndexMismatchError(CoverIdError):
    """An index was built with a different encoder, dimension or projection."""


class WeightsUnavailableError(CoverIdError):
    """Model weights are neither cached locally nor downloadable."""
