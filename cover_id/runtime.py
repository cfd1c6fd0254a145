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
BLAS gets one thread in identify (:func:`one_blas_thread`): its matrix products
are small and already run side by side on the pool.
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
    keep_freed_memory()
    _done = n
    return n


# glibc's malloc gives every block above its mmap threshold (at most 32 MiB) fresh pages from the kernel and
# returns them on free; it also trims the heap's top above its trim threshold. Identify allocates and frees
# megabytes per candidate (descriptor products, image copies), so each photo faulted in ~40 MB of zeroed pages:
# 10,000 page faults and ~30 ms of system time per photo on the DVD dev photos. Kept in the process instead
# (the footprint stays at the peak of one photo's work), a batch of 40 dev photos took 10 % less CPU.
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse instead of returning them to the kernel at once (a no-op,
    False, on other C libraries). Environment settings (``MALLOC_MMAP_THRESHOLD_``...) take precedence."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""  # instant, unlike platform.libc_ver(), which reads the binary
    except (AttributeError, ValueError, OSError):  # not a GNU C library (musl, macOS, Windows)
        return False
    if not version.startswith("glibc"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # pragma: no cover - a glibc without mallopt
        return False


def one_blas_thread() -> None:
    """Every loaded BLAS library (numpy's, FAISS's and OpenCV's OpenBLAS each) at one thread.

    Identify runs its steps and candidates side by side on its own pool, each matrix product small
    (a photo's 1,000 descriptors against a candidate's); BLAS threads on top of that only spin and
    oversubscribe. On the DVD dev photos with a budget of two threads, BLAS at its default of one
    thread per core cost 343-355 CPU-ms and a p50 of 172-180 ms per photo; at one thread,
    210-228 CPU-ms and 123-138 ms, the same answers. BLAS reads ``OPENBLAS_NUM_THREADS`` only when
    it loads, usually before any command runs, so the count is set here, on the loaded libraries.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


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
