"""Thread counts, set once per process before heavy work.

On small machines torch, OpenCV and FAISS each default to one thread per core
and then fight each other; oversubscription costs up to 10x. Every command
calls :func:`set_threads` before it loads models.

One budget of ``n`` threads serves everything. Identify runs independent
steps side by side on a pool of ``n`` threads plus the calling thread, and
the pool's workers get the same library budget (:func:`worker_init`; OpenMP
keeps it per thread). OpenCV runs a parallel loop that starts while another
is running in the calling thread alone, so RootSIFT beside the outline
search uses ``n`` + 1 threads at the most. A photo's RootSIFT is itself cut in
two halves, the second on the pool (:func:`split_features`): with the outline
search beside it, three OpenCV calls run at once (this thread and two pool
workers), and only one of them at a time gets OpenCV's own threads for a loop.
"""

from __future__ import annotations

import os

_done: int | None = None


def thread_count(requested: int | None = 0) -> int:
    cores = os.cpu_count() or 1
    return cores if not requested or requested <= 0 else min(int(requested), cores)


def set_threads(requested: int | None = 0) -> int:
    """Give torch, OpenCV and FAISS the same explicit thread budget."""
    global _done
    n = thread_count(requested)
    if _done == n:
        return n
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import cv2

    cv2.setNumThreads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    import sys

    if "torch" in sys.modules:  # never import torch just to configure it
        import torch

        torch.set_num_threads(n)
    _done = n
    return n


def split_features() -> bool:
    """Whether identify describes a photo as two halves (on two threads at once with a budget of two or
    more, in turn with one). ``COVER_ID_SPLIT_FEATURES=0`` describes photos in one piece, to compare."""
    return os.environ.get("COVER_ID_SPLIT_FEATURES", "1").strip() not in ("0", "false", "no", "off")


def worker_init(requested: int | None = 0) -> None:
    """Run in each worker thread of a pool: OpenMP (FAISS) keeps its thread count per thread, and a
    worker would otherwise get the library's default (one per core) instead of the budget."""
    try:
        import faiss

        faiss.omp_set_num_threads(thread_count(requested))
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
