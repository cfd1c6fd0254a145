"""Moved to :mod:`cover_id.index.store`; this name keeps older imports working (same module object)."""

import sys

from cover_id.index import store as _moved

sys.modules[__name__] = _moved
