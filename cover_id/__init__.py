"""cover-id: tell which item of a reference collection a photo shows."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Matching multiplies many small matrices; a multi-threaded BLAS only adds
# contention there (10x slower on a busy 2-core machine). It must be set
# before numpy loads; users can still override it in their environment.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
