"""Encoder factory: pick, build and re-create encoders from an index's spec."""

from __future__ import annotations

from typing import Any

from cover_id.encoders.base import Encoder
from cover_id.errors import CoverIdError


def resolve_encoder_name(name: str, model: str, pretrained: str | None) -> tuple[str, str | None]:
    """``auto`` -> ``clip`` when its weights can be had, else ``local``; returns (name, notice)."""
    if name != "auto":
        return name, None
    from cover_id.encoders.clip import weights_available

    if weights_available(model, pretrained):
        return "clip", None
    return "local", (
        f"CLIP weights {model}/{pretrained} are not available offline: using the built-in 'local' encoder"
    )


def create_encoder(name: str, **options: Any) -> Encoder:
    """Instantiate a registered encoder by name with only the options it accepts.

    ``None`` is passed through: for clip, ``pretrained=None`` means random weights.
    """
    from cover_id.plugins import instantiate, load

    return instantiate(load("encoders", name), **options)


def encoder_from_spec(spec: dict[str, Any], options: dict[str, Any] | None = None) -> Encoder:
    """Re-create the encoder that built an index (``options``: device, batch size)."""
    if "name" not in spec:
        raise CoverIdError("index manifest has no encoder spec; rebuild it with `cover-id index --rebuild`")
    params = dict(spec.get("params", {}))
    params.update(options or {})
    return create_encoder(spec["name"], **params)
