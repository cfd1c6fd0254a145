"""Entry-point plugins: built-ins are registered exactly like third-party ones.

Groups: ``cover_id.commands`` (extra subcommands), ``cover_id.encoders``,
``cover_id.detectors``, ``cover_id.rerankers``. Only the entry point that is
asked for is loaded, so listing plugins imports nothing heavy.
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


def available(kind: str) -> dict[str, EntryPoint]:
    """Installed plugins of one kind, by name (first registration wins)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, ep)
    return found


def load(kind: str, name: str) -> Any:
    """Import and return the object a plugin entry point names."""
    eps = available(kind)
    if name not in eps:
        names = ", ".join(sorted(eps)) or "none installed"
        singular = kind.rstrip("s")
        raise CoverIdError(f"unknown {singular} '{name}' (available: {names})")
    try:
        return eps[name].load()
    except ImportError as exc:
        raise CoverIdError(f"{kind[:-1]} plugin '{name}' failed to import: {exc}") from None


def instantiate(cls: Any, **options: Any) -> Any:
    """``cls(**options)`` with only the options its constructor accepts (others ignored).

    ``None`` is passed through: for clip, ``pretrained=None`` means random weights.
    """
    import inspect

    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})


def same_config(obj: Any) -> dict[str, Any]:
    """The constructor options an instance was built with (attributes named like its parameters)."""
    import inspect

    params = inspect.signature(type(obj)).parameters
    return {name: getattr(obj, name) for name in params if hasattr(obj, name)}
