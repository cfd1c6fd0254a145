"""Moved to :mod:`cover_id.evaluate.synth`; this name stays importable for existing callers."""

from cover_id.evaluate.synth import *  # noqa: F403
from cover_id.evaluate.synth import __all__  # noqa: F401
