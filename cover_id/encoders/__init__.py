"""Encoder factory: pick, build and re-create encoders from an index's spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cover_id.encoders.base import Encoder
from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features

RANDOM_WEIGHTS = (None, "", "none", "None")


def resolve_encoder_name(name: str, model: str, pretrained: str | None) -> tuple[str, str | None]:
    """``auto`` -> ``clip`` when its weights can be had, else ``local``; returns (name, notice).

    ``auto`` never picks random CLIP weights: those are asked for with ``--encoder clip --pretrained none``.
    """
    if name != "auto":
        return name, None
    if pretrained in RANDOM_WEIGHTS:
        return "local", "no CLIP weights were named (pretrained: none): using the built-in 'local' encoder"
    from cover_id.encoders.clip import weights_available

    if weights_available(model, pretrained):
        return "clip", None
    return "local", f"CLIP weights {model}/{pretrained} are not available offline: using the built-in 'local' encoder"


def create_encoder(name: str, **options: Any) -> Encoder:
    """Instantiate a registered encoder by name with only the options it accepts.

    ``None`` is passed through: for clip, ``pretrained=None`` means random weights.
    """
    from cover_id.plugins import create

    encoder: Encoder = create("encoders", name, **options)
    return encoder


def encoder_from_settings(settings: Mapping[str, Any]) -> tuple[Encoder, str | None]:
    """Resolve ``encoder`` (auto) and build it from the index settings; returns (encoder, notice)."""
    name, notice = resolve_encoder_name(settings["encoder"], settings["model"], settings["pretrained"])
    options = {k: settings[k] for k in ("model", "pretrained", "device", "batch_size") if k in settings}
    return create_encoder(name, **options), notice


def encode(encoder: Encoder, images: "list[np.ndarray]", feats: "list[Features]") -> "np.ndarray":
    """Raw vectors of images whose keypoints are already extracted: the keypoints when the encoder
    ``supports_features`` (no second pass over the pixels), else the pixels. ``images`` may be
    empty when the encoder supports features."""
    return encoder.encode_features(feats) if encoder.supports_features else encoder.encode_images(images)


def encode_references(
    encoder: Encoder, images: "Sequence[np.ndarray]", features: "Sequence[Features] | None" = None
) -> "np.ndarray":
    """(N, D) float32 raw vectors for reference images (BGR); ``features`` reuses already extracted
    keypoints. Index build, the server's "add a reference" and training all embed this way."""
    import numpy as np

    if encoder.supports_features and features is None:
        from cover_id.features import extract_features

        features = [extract_features(im) for im in images]
    return np.asarray(encode(encoder, list(images), list(features or [])), np.float32)


def encoder_from_spec(spec: dict[str, Any], options: dict[str, Any] | None = None) -> Encoder:
    """Re-create the encoder that built an index (``options``: device, batch size)."""
    if "name" not in spec:
        raise CoverIdError("index manifest has no encoder spec; rebuild it with `cover-id index --rebuild`")
    params = dict(spec.get("params", {}))
    params.update(options or {})
    return create_encoder(spec["name"], **params)
