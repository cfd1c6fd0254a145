"""Atomic file and folder writes: a crash or Ctrl-C never leaves half an index."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` of ``arrays`` to ``path``, on disk before it replaces the old file."""
    import numpy as np

    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())


def staging_dir(target: Path) -> Path:
    """A fresh empty folder beside ``target`` to build a new version in (named after our pid)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_leftovers(target: Path) -> list[Path]:
    """Staging folders beside ``target`` left by a killed write (their process is gone)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    out = []
    for p in target.parent.glob(f".{target.name}.staging-*"):
        pid_text = p.name[len(f".{target.name}.staging-") :].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None  # older names carry no pid
        if pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            out.append(p)
    tmp = target.parent / f".{target.name}.building-new"
    if tmp.exists():
        out.append(tmp)
    return sorted(out)


def clean_stale(target: Path) -> list[Path]:
    """Remove :func:`stale_leftovers`; returns what was removed."""
    gone = stale_leftovers(target)
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE) where the OS has it."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def publish_dir(staged: Path, target: Path) -> None:
    """Make ``staged`` become ``target`` in one step; the old version is removed after."""
    if not target.exists():
        os.rename(staged, target)
        return
    if _exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # staged now holds the old version
        return
    # Fallback: two renames; recover_dir() finishes the job if we die in between.
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """If a fallback publish died between its two renames, put the old version back."""
    old = target.parent / f".{target.name}.old"
    if not target.exists() and old.exists():
        os.rename(old, target)


def discard(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)
