"""The encoder plugin interface.

An encoder turns images into float32, L2-normalised rows. Encoders that learn
something from the references (the ``local`` engine fits a codebook) expose
``fit`` plus ``state``/``load_state``; the index stores that state so queries
are encoded exactly like the references were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def spec(self) -> dict[str, Any]:
        """What built the vectors: recorded in the manifest and compared on open."""
        ...

    def encode_images(self, images: "list[np.ndarray]") -> "np.ndarray":
        """BGR uint8 images -> float32 array (len(images), dim), rows L2-normalised."""
        ...


class FittableEncoder(Encoder, Protocol):
    def fit(self, images: "list[np.ndarray]") -> None: ...

    def is_fitted(self) -> bool: ...

    def state(self) -> "dict[str, np.ndarray]": ...

    def load_state(self, state: "dict[str, np.ndarray]") -> None: ...


def l2_normalize(x: "np.ndarray") -> "np.ndarray":
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
