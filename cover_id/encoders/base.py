"""The encoder plugin contract.

An encoder turns images into float32, L2-normalised rows (one global vector
per image). Subclass :class:`Encoder`, implement :meth:`spec` and
:meth:`encode_images`, register the class in the ``cover_id.encoders``
entry-point group and build an index with ``--encoder NAME``. Constructor
keyword arguments are the encoder's options (``model``, ``pretrained``,
``device``, ``batch_size`` are passed when accepted).

Optional abilities are declared by capability flags, never discovered with
``hasattr``:

- ``supports_features``: :meth:`encode_features` encodes the RootSIFT
  :class:`~cover_id.features.Features` identify already extracted (no second
  pass over the pixels).
- ``supports_text``: :meth:`encode_text` embeds text queries in the same space.
- ``fittable``: the encoder learns from the references (:meth:`fit_features`);
  its :meth:`state` is stored in the index and restored with
  :meth:`load_state`, so queries are encoded exactly like the references.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features


class Encoder(ABC):
    """Images -> global vectors. ``name`` is the plugin name; ``dim`` the vector length."""

    name: ClassVar[str] = "encoder"
    supports_features: ClassVar[bool] = False
    supports_text: ClassVar[bool] = False
    fittable: ClassVar[bool] = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of every vector."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """What built the vectors (``name``, ``dim``, ``params``...): recorded in the manifest, compared on open."""

    @abstractmethod
    def encode_images(self, images: "list[np.ndarray]") -> "np.ndarray":
        """BGR uint8 images -> float32 array (len(images), dim), rows L2-normalised."""

    def is_fitted(self) -> bool:
        return True

    def state(self) -> "dict[str, np.ndarray]":
        """Arrays the index stores to re-create this encoder exactly (fittable encoders)."""
        return {}

    # The optional abilities, implemented by encoders that set the matching flag.
    def encode_features(self, features: "list[Features]") -> "np.ndarray":
        """Extracted keypoints -> vectors like :meth:`encode_images` (``supports_features``)."""
        raise NotImplementedError(f"encoder {self.name!r} does not encode keypoints (supports_features is False)")

    def encode_text(self, texts: list[str]) -> "np.ndarray":
        """Text -> vectors in the image space (``supports_text``)."""
        raise NotImplementedError(f"encoder {self.name!r} has no text tower (supports_text is False)")

    def fit_features(self, features: "list[Features]") -> None:
        """Learn from the references' keypoints (``fittable``)."""
        raise NotImplementedError(f"encoder {self.name!r} learns nothing from references (fittable is False)")

    def load_state(self, state: "dict[str, np.ndarray]") -> None:
        """Restore :meth:`state` (``fittable``)."""
        raise NotImplementedError(f"encoder {self.name!r} has no state to load (fittable is False)")


def l2_normalize(x: "np.ndarray") -> "np.ndarray":
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
