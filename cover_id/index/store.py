"""The index folder: vectors, FAISS index, manifest, cached keypoints.

Layout (every file is replaced together, atomically, on save)::

    manifest.json       format, encoder spec, projection, file hashes, counts, calibration
    embeddings.npz      embeddings (N, D) float32 + ids, names, filenames
    faiss.index         inner-product index over the L2-normalised embeddings
    references.jsonl    every reference's record (id, name, filename, catalog fields)
    keypoints.npz       RootSIFT keypoints of every reference, for geometric re-ranking
    encoder_state.npz   state the encoder learned from the references (local codebook)
    voter.npz           every reference descriptor in a FAISS index, for vote shortlisting
    projection.npz      projection head applied after the encoder, if any
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError, IndexMismatchError
from cover_id.store_io import discard, publish_dir, recover_dir, staging_dir

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder
    from cover_id.features import Features
    from cover_id.projection import Projection

FORMAT_VERSION = 1
HNSW_FROM = 200_000  # exact search below this many references, HNSW above
VOTER_MAX = 200_000  # keypoint votes need every reference descriptor in memory: skip above


def _faiss_index(embeddings: "np.ndarray", kind: str):
    import faiss

    dim = embeddings.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dim)
    if len(embeddings):
        index.add(embeddings)
    return index


@dataclass
class IndexStore:
    """An index in memory; :meth:`open` reads one, :meth:`save` writes one atomically."""

    manifest: dict[str, Any]
    embeddings: "np.ndarray"
    records: list[dict[str, Any]]
    features: "list[Features]"
    encoder_state: "dict[str, np.ndarray]" = field(default_factory=dict)
    projection: "Projection | None" = None
    raw: "np.ndarray | None" = None  # encoder vectors before the projection head (None: no head)
    voter_state: "dict[str, np.ndarray]" = field(default_factory=dict)
    path: Path | None = None
    _faiss: Any = None
    _voter: Any = None
    _by_id: dict[str, int] | None = None

    # ---- reading -----------------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "IndexStore":
        """Load an index folder; a clear error if it is missing, partial or too new."""
        import numpy as np

        from cover_id.features import unpack_features
        from cover_id.projection import Projection

        path = Path(path)
        recover_dir(path)
        manifest_path = path / "manifest.json"
        if not path.is_dir():
            raise CoverIdError(f"index not found: {path} (build one with `cover-id index --refs DIR --out {path}`)")
        if not manifest_path.is_file():
            raise CoverIdError(f"{path} is not a cover-id index (no manifest.json)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            raise CoverIdError(f"{manifest_path}: corrupt manifest; rebuild with `cover-id index --rebuild`") from None
        if manifest.get("format", 0) > FORMAT_VERSION:
            raise CoverIdError(f"{path} was written by a newer cover-id (format {manifest.get('format')}); upgrade")
        try:
            with np.load(path / "embeddings.npz", allow_pickle=False) as z:
                embeddings = np.ascontiguousarray(z["embeddings"], dtype=np.float32)
                raw = np.ascontiguousarray(z["raw"], dtype=np.float32) if "raw" in z.files else None
            records = [json.loads(line) for line in (path / "references.jsonl").read_text().splitlines() if line]
            with np.load(path / "keypoints.npz", allow_pickle=False) as z:
                features = unpack_features({k: z[k] for k in z.files})
            state: dict[str, np.ndarray] = {}
            if (path / "encoder_state.npz").is_file():
                with np.load(path / "encoder_state.npz", allow_pickle=False) as z:
                    state = {k: z[k] for k in z.files}
            voter_state: dict[str, np.ndarray] = {}
            if (path / "voter.npz").is_file():
                with np.load(path / "voter.npz", allow_pickle=False) as z:
                    voter_state = {k: z[k] for k in z.files}
            projection = None
            if (path / "projection.npz").is_file():
                with np.load(path / "projection.npz", allow_pickle=False) as z:
                    projection = Projection.from_arrays({k: z[k] for k in z.files})
        except (OSError, KeyError, ValueError) as exc:
            raise CoverIdError(f"{path}: index files are damaged ({exc}); rebuild with `cover-id index --rebuild`") from None
        if not (len(embeddings) == len(records) == len(features)):
            raise CoverIdError(f"{path}: index files disagree on the number of references; rebuild it")
        store = cls(manifest, embeddings, records, features, state, projection, raw, voter_state, path)
        faiss_path = path / "faiss.index"
        if faiss_path.is_file():
            import faiss

            store._faiss = faiss.read_index(str(faiss_path))
        return store

    @property
    def size(self) -> int:
        return len(self.records)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def encoder_spec(self) -> dict[str, Any]:
        return self.manifest["encoder"]

    @property
    def refs_root(self) -> Path:
        return Path(self.manifest.get("refs_root", "."))

    def image_path(self, i: int) -> Path:
        """Where reference ``i``'s image lives (stored filenames are relative to refs_root)."""
        name = self.records[i]["filename"]
        p = Path(name)
        return p if p.is_absolute() else self.refs_root / p

    def index_of(self, ref_id: str) -> int | None:
        if self._by_id is None:
            self._by_id = {r["id"]: i for i, r in enumerate(self.records)}
        return self._by_id.get(ref_id)

    def faiss_index(self):
        if self._faiss is None or self._faiss.ntotal != len(self.embeddings):
            kind = "hnsw" if len(self.embeddings) >= HNSW_FROM else "flat"
            self._faiss = _faiss_index(self.embeddings, kind)
            self.manifest["faiss"] = {"type": kind}
        return self._faiss

    @property
    def has_voter(self) -> bool:
        return bool(self.manifest.get("voter", True)) and 0 < self.size

    def voter(self):
        """The descriptor-vote shortlister over every reference keypoint (built on demand)."""
        from cover_id.encoders.local import DescriptorVoter

        if self._voter is None or self._voter.n_refs != self.size:
            voter = DescriptorVoter()
            if self.voter_state and int(self.voter_state["voter_n_refs"][0]) == self.size:
                voter.load_state(self.voter_state)
            else:
                voter.fit(self.features)
            self._voter = voter
        return self._voter

    def search(self, vectors: "np.ndarray", k: int) -> "tuple[np.ndarray, np.ndarray]":
        """Top-k (scores, indices) for each row; missing neighbours are dropped by the caller (-1)."""
        import numpy as np

        k = max(1, min(int(k), self.size))
        if self.size == 0:
            n = len(vectors)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        return self.faiss_index().search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def create_encoder(self, options: dict[str, Any] | None = None) -> "Encoder":
        """The encoder that built this index, with its learned state loaded."""
        from cover_id.encoders import encoder_from_spec

        encoder = encoder_from_spec(self.encoder_spec, options)
        if self.encoder_state and hasattr(encoder, "load_state"):
            encoder.load_state(self.encoder_state)  # type: ignore[attr-defined]
        return encoder

    def embed(self, raw: "np.ndarray") -> "np.ndarray":
        """Encoder vectors -> index space (applies the projection head, if any)."""
        return self.projection.apply(raw) if self.projection is not None else raw

    @property
    def raw_embeddings(self) -> "np.ndarray":
        return self.embeddings if self.raw is None else self.raw

    def check_compatible(self, spec: dict[str, Any], projection: "Projection | None", check_head: bool = True) -> None:
        """Refuse to mix vectors from another encoder, dimension or head."""
        mine = self.encoder_spec
        how = "rebuild it with `cover-id index --rebuild` (or write to another --out)"
        if (mine.get("name"), mine.get("params")) != (spec.get("name"), spec.get("params")):
            raise IndexMismatchError(
                f"index {self.path} was built with encoder {describe_spec(mine)}, not {describe_spec(spec)}; {how}"
            )
        if mine.get("weights") != spec.get("weights"):
            raise IndexMismatchError(f"index {self.path} was built with other {mine.get('name')} weights; {how}")
        if not check_head:
            return
        have = self.manifest.get("projection") or {}
        want = {"fingerprint": projection.fingerprint} if projection else {}
        if have.get("fingerprint") != want.get("fingerprint"):
            raise IndexMismatchError(f"index {self.path} was built with a different projection head; {how}")

    # ---- changing -----------------------------------------------------------------
    def add(self, record: dict[str, Any], raw: "np.ndarray", features: "Features", sha256: str) -> int:
        """Append one reference from its encoder vector; returns its row."""
        import numpy as np

        if self.index_of(record["id"]) is not None:
            raise CoverIdError(f"a reference with id '{record['id']}' already exists")
        raw = np.asarray(raw, dtype=np.float32).reshape(1, -1)
        vector = self.embed(raw)
        voter = self.voter() if self.has_voter else None
        if self.raw is not None:
            self.raw = np.vstack([self.raw, raw])
        self.embeddings = np.vstack([self.embeddings, vector.reshape(1, -1).astype(np.float32)])
        self.records.append(record)
        self.features.append(features)
        if voter is not None:
            voter.add([features])
        self.manifest.setdefault("files", {})[record["filename"]] = sha256
        self._by_id = None
        if self._faiss is not None and self.manifest.get("faiss", {}).get("type") == "flat":
            self._faiss.add(vector.reshape(1, -1).astype(np.float32))
        return len(self.records) - 1

    def remove(self, ref_id: str) -> dict[str, Any]:
        """Drop one reference by id; returns its record."""
        import numpy as np

        i = self.index_of(ref_id)
        if i is None:
            raise CoverIdError(f"no reference with id '{ref_id}'")
        voter = self.voter() if self.has_voter else None
        record = self.records.pop(i)
        self.features.pop(i)
        self.embeddings = np.delete(self.embeddings, i, axis=0)
        if self.raw is not None:
            self.raw = np.delete(self.raw, i, axis=0)
        self.manifest.get("files", {}).pop(record["filename"], None)
        self._by_id = None
        self._faiss = None
        if voter is not None:
            voter.remove(i)
        return record

    def copy(self) -> "IndexStore":
        """A copy that can be changed without disturbing readers of this one."""
        import copy

        return IndexStore(
            manifest=copy.deepcopy(self.manifest),
            embeddings=self.embeddings.copy(),
            records=list(self.records),
            features=list(self.features),
            encoder_state=self.encoder_state,
            projection=self.projection,
            raw=None if self.raw is None else self.raw.copy(),
            voter_state=self.voter().state() if self.has_voter else {},
            path=self.path,
        )

    # ---- writing ------------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        """Write every file into a staging folder, then swap it in atomically."""
        import faiss
        import numpy as np

        from cover_id.features import pack_features

        target = Path(path or self.path or ".")
        self.manifest.update(
            format=FORMAT_VERSION,
            count=self.size,
            dim=int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else self.dim,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        index = self.faiss_index()
        staged = staging_dir(target)
        try:
            np.savez(
                staged / "embeddings.npz",
                embeddings=self.embeddings.astype(np.float32),
                ids=np.array([r["id"] for r in self.records], dtype=str),
                names=np.array([r["name"] for r in self.records], dtype=str),
                filenames=np.array([r["filename"] for r in self.records], dtype=str),
                **({"raw": self.raw.astype(np.float32)} if self.raw is not None else {}),
            )
            with open(staged / "references.jsonl", "w", encoding="utf-8") as f:
                for r in self.records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            np.savez(staged / "keypoints.npz", **pack_features(self.features))
            if self.encoder_state:
                np.savez(staged / "encoder_state.npz", **self.encoder_state)
            if self.projection is not None:
                np.savez(staged / "projection.npz", **self.projection.to_arrays())
            if self.has_voter:
                self.voter_state = self.voter().state()
                np.savez(staged / "voter.npz", **self.voter_state)
            faiss.write_index(index, str(staged / "faiss.index"))
            (staged / "manifest.json").write_text(json.dumps(self.manifest, indent=2, ensure_ascii=False))
            for f in staged.iterdir():  # data on disk before the swap makes it visible
                with open(f, "rb") as fh:
                    import os

                    os.fsync(fh.fileno())
            publish_dir(staged, target)
        except BaseException:
            discard(staged)
            raise
        self.path = target
        return target


def describe_spec(spec: dict[str, Any]) -> str:
    """'clip (ViT-B-32, laion2b_s34b_b79k)' — for messages."""
    params = spec.get("params") or {}
    inner = ", ".join(str(v) for v in params.values() if v is not None and not isinstance(v, (dict, list)))
    return f"'{spec.get('name')}'" + (f" ({inner})" if inner else "")
