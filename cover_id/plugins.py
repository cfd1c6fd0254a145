"""Entry-point plugins: built-ins are registered exactly like third-party ones.

Groups (the contract of each is the abstract base named here):

=====================  =======================================================
``cover_id.commands``   a Typer app or click command: an extra ``cover-id`` subcommand
``cover_id.encoders``   a subclass of :class:`cover_id.encoders.base.Encoder`
``cover_id.detectors``  a subclass of :class:`cover_id.detectors.base.Detector`
``cover_id.rerankers``  a subclass of :class:`cover_id.rerankers.base.Reranker`
=====================  =======================================================

Only the entry point that is asked for is loaded, so listing plugins imports
nothing heavy. A built-in (provided by cover-id itself) always wins over a
third-party plugin of the same name, whatever the install order; the clash is
listed by ``cover-id plugins`` (:func:`clashes`).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from cover_id.errors import CoverIdError

GROUPS = {
    "commands": "cover_id.commands",
    "encoders": "cover_id.encoders",
    "detectors": "cover_id.detectors",
    "rerankers": "cover_id.rerankers",
}
BASES = {
    "encoders": ("cover_id.encoders.base", "Encoder"),
    "detectors": ("cover_id.detectors.base", "Detector"),
    "rerankers": ("cover_id.rerankers.base", "Reranker"),
}
OWN_DIST = "cover-id"


def _is_builtin(ep: EntryPoint) -> bool:
    return ep.value.startswith("cover_id.") and (ep.dist is None or ep.dist.name.replace("_", "-") == OWN_DIST)


def _registered(kind: str) -> dict[str, list[EntryPoint]]:
    """Every registration of each name, built-ins first."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUPS[kind]):
        regs = found.setdefault(ep.name, [])
        if any(e.value == ep.value and _dist(e) == _dist(ep) for e in regs):
            continue  # the same distribution seen twice on the path
        regs.append(ep)
    for regs in found.values():
        regs.sort(key=lambda e: not _is_builtin(e))
    return found


def _dist(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def available(kind: str) -> dict[str, EntryPoint]:
    """Installed plugins of one kind, by name (a built-in wins a name clash)."""
    return {name: regs[0] for name, regs in _registered(kind).items()}


def clashes(kind: str) -> dict[str, list[EntryPoint]]:
    """Names registered more than once: the entry points that lost, by name."""
    return {name: regs[1:] for name, regs in _registered(kind).items() if len(regs) > 1}


def load(kind: str, name: str) -> Any:
    """Import and return the object a plugin entry point names (a class of the kind's base)."""
    eps = available(kind)
    if name not in eps:
        names = ", ".join(sorted(eps)) or "none installed"
        raise CoverIdError(f"unknown {kind[:-1]} '{name}' (available: {names})")
    try:
        obj = eps[name].load()
    except ImportError as exc:
        raise CoverIdError(f"{kind[:-1]} plugin '{name}' failed to import: {exc}") from None
    if kind in BASES:
        import importlib

        module, cls_name = BASES[kind]
        base = getattr(importlib.import_module(module), cls_name)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise CoverIdError(
                f"{kind[:-1]} plugin '{name}' ({eps[name].value}) is not a subclass of {module}.{cls_name}"
            )
    return obj


def instantiate(cls: Any, **options: Any) -> Any:
    """``cls(**options)`` with only the options its constructor accepts (others ignored).

    ``None`` is passed through: for clip, ``pretrained=None`` means random weights.
    """
    import inspect

    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})


def create(kind: str, name: str, **options: Any) -> Any:
    """A plugin instance by kind and name, with only the options its constructor accepts."""
    return instantiate(load(kind, name), **options)


def same_config(obj: Any) -> dict[str, Any]:
    """The constructor options an instance was built with (attributes named like its parameters)."""
    import inspect

    params = inspect.signature(type(obj)).parameters
    return {name: getattr(obj, name) for name in params if name in vars(obj)}
