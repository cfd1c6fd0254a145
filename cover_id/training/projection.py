"""Projection heads: a small MLP applied to frozen encoder vectors.

``cover-id train`` writes a head; ``cover-id index --projection head.npz``
applies it to every vector and copies it into the index, so identify and
serve apply the same head to queries. Heads are applied with numpy: queries
never need torch for them.

The head file is a numpy ``.npz`` archive (a JSON ``header`` plus ``w0, b0,
w1, b1, ...``), whatever its name: ``.npz`` is the documented suffix, and
files named ``head.pt`` by earlier versions are read the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "cover-id-head/1"


@dataclass
class Projection:
    """Linear layers with ReLU between them, plus an optional residual input skip."""

    weights: list[np.ndarray]  # each (out, in)
    biases: list[np.ndarray]
    encoder: dict[str, Any]  # spec of the encoder the head was trained on
    residual: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for w, b in zip(self.weights, self.biases):
            h.update(w.astype("float32").tobytes())
            h.update(b.astype("float32").tobytes())
        return h.hexdigest()[:16]

    def apply(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        from cover_id.encoders.base import l2_normalize

        h = np.asarray(x, dtype=np.float32)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        if self.residual and h.shape[1] == x.shape[1]:
            h = h + x
        return l2_normalize(h)

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        import numpy as np

        out: dict[str, np.ndarray] = {
            "header": np.array(
                json.dumps({"format": FORMAT, "encoder": self.encoder, "residual": self.residual, "meta": self.meta})
            )
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"w{i}"] = w.astype(np.float32)
            out[f"b{i}"] = b.astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Projection:
        import json

        header = json.loads(str(arrays["header"]))
        n = sum(1 for k in arrays if k.startswith("w"))
        return cls(
            weights=[arrays[f"w{i}"] for i in range(n)],
            biases=[arrays[f"b{i}"] for i in range(n)],
            encoder=header["encoder"],
            residual=bool(header.get("residual", False)),
            meta=header.get("meta", {}),
        )


def save_projection(proj: Projection, path: Path) -> None:
    """Write a head file: a numpy ``.npz`` archive, whatever the suffix (``.npz`` recommended)."""
    import numpy as np

    from cover_id.store_io import atomic_write

    with atomic_write(Path(path)) as tmp, open(tmp, "wb") as f:
        arrays: dict[str, Any] = proj.to_arrays()
        np.savez(f, **arrays)


def load_projection(path: Path) -> Projection:
    """Read a head written by ``cover-id train``; one clear error for anything else."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise CoverIdError(f"projection head not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        proj = Projection.from_arrays(arrays)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise CoverIdError(f"{path}: not a cover-id projection head ({type(exc).__name__})") from None
    return proj
