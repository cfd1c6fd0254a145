"""Moved to :mod:`cover_id.index.build`; this name keeps older imports working (same module object)."""

import sys

from cover_id.index import build as _moved

sys.modules[__name__] = _moved
