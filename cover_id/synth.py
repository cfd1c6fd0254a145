"""Moved to :mod:`cover_id.evaluate.synth`; this name stays importable for existing callers."""

from cover_id.evaluate.synth import *
from cover_id.evaluate.synth import __all__  # noqa: F401
