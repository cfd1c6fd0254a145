"""Reference images to encoder vectors, the one way every caller does it.

Encoders that work on local features (``local``: RootSIFT + VLAD) are given the
features; the others (``clip``) are given the pixels. Index build, the server's
"add a reference" and training all go through :func:`encode_references`, so a
reference is embedded the same way wherever it enters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder


def uses_features(encoder: Encoder) -> bool:
    """True when ``encoder`` embeds local features rather than pixels."""
    return callable(getattr(encoder, "encode_features", None))


def encode_references(
    encoder: Encoder, images: Sequence[np.ndarray], features: Sequence[Any] | None = None
) -> np.ndarray:
    """(N, D) raw vectors for reference images (BGR); ``features`` reuses already extracted ones."""
    import numpy as np

    encode_features = getattr(encoder, "encode_features", None)
    if callable(encode_features):
        if features is None:
            from cover_id.features import extract_features

            features = [extract_features(im) for im in images]
        return np.asarray(encode_features(list(features)), np.float32)
    return np.asarray(encoder.encode_images(list(images)), np.float32)
