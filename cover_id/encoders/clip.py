"""The ``clip`` encoder: an open_clip image tower (text tower for text search).

Weights come from the local Hugging Face cache, a local file, or a download
with a progress bar. Offline is detected in well under a second (no hub
retries): then :class:`WeightsUnavailableError` says what to do instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.encoders.base import Encoder
from cover_id.errors import CoverIdError, WeightsUnavailableError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
HUB_HOST = "huggingface.co"
HUB_PORT = 443
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_reachable(timeout: float = 2.0) -> bool:
    """A short TCP probe of the hub, bounded even when DNS itself hangs."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, HUB_PORT), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def _hub_repo(model: str, pretrained: str) -> str | None:
    """The Hugging Face repo that holds ``pretrained`` (a tag or ``hf-hub:org/name``)."""
    if pretrained.startswith("hf-hub:"):
        return pretrained[len("hf-hub:") :]
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise CoverIdError(f"unknown pretrained tag '{pretrained}' for {model} (known: {known})")
    hub = cfg.get("hf_hub", "")
    return hub.rstrip("/") or None


def cached_weights(model: str, pretrained: str) -> Path | None:
    """The cached weights file for a hub tag, if it was downloaded before."""
    repo = _hub_repo(model, pretrained)
    if repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def weights_available(model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED) -> bool:
    """True when weights can be had without waiting on retries: a file, the cache, or a reachable hub."""
    if not pretrained or pretrained == "none" or Path(pretrained).expanduser().is_file():
        return True
    try:
        return cached_weights(model, pretrained) is not None or hub_reachable()
    except CoverIdError:
        return False


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return f"sha256-head-tail:{h.hexdigest()[:16]}:{size}"


class ClipEncoder(Encoder):
    """open_clip image encoder; ``pretrained=None`` gives seeded random weights (tests)."""

    name = "clip"
    supports_text = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import open_clip
        import torch

        if pretrained in ("", "none", "None"):
            pretrained = None
        if model not in open_clip.list_models():
            raise CoverIdError(f"unknown CLIP model '{model}' (try ViT-B-32, ViT-B-16, ViT-L-14)")
        self.model_name = model
        self.pretrained = pretrained
        self.device = device
        self.batch_size = batch_size
        load_from: str | None = None
        downloading = False
        if pretrained is None:
            torch.manual_seed(0)  # random weights, but the same ones every time
            self.weights = "random:seed0"
        elif Path(pretrained).expanduser().is_file():
            load_from = str(Path(pretrained).expanduser())
            self.weights = _file_fingerprint(Path(load_from))
        else:
            cached = cached_weights(model, pretrained)
            if cached is not None:
                load_from = str(cached)
                self.weights = f"{pretrained}:{cached.name}:{_file_fingerprint(cached)}"
            elif hub_reachable():
                load_from = pretrained  # open_clip downloads it, with a progress bar
                downloading = True
            else:
                raise WeightsUnavailableError(
                    f"CLIP weights {model}/{pretrained} are not in the local cache and the hub cannot be "
                    "reached; use --encoder local (no weights needed) or --pretrained /path/to/weights.bin"
                )
        try:
            logging.disable(logging.WARNING)  # open_clip warns on random init, which is what was asked for
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=load_from, device=device)
        except (RuntimeError, OSError, ValueError) as exc:
            raise CoverIdError(f"could not load CLIP weights {pretrained}: {str(exc).splitlines()[0]}") from None
        finally:
            logging.disable(logging.NOTSET)
        if downloading:
            assert pretrained is not None
            found = cached_weights(model, pretrained)
            self.weights = f"{pretrained}:{found.name}:{_file_fingerprint(found)}" if found else pretrained
        net.eval()
        self.net = net
        self.preprocess = preprocess
        self._tokenizer: Any = None
        with torch.no_grad():
            probe = self.net.encode_image(torch.zeros(1, 3, *self._input_size(), device=device))
        self._dim = int(probe.shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    def _input_size(self) -> tuple[int, int]:
        size = getattr(self.net.visual, "image_size", 224)
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": {"model": self.model_name, "pretrained": self.pretrained},
            "dim": self.dim,
            "weights": self.weights,
        }

    def encode_images(self, images: "list[np.ndarray]") -> "np.ndarray":
        import numpy as np
        import torch
        from PIL import Image

        from cover_id.encoders.base import l2_normalize

        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [
                self.preprocess(Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])))
                for img in images[start : start + self.batch_size]
            ]
            with torch.no_grad():
                feats = self.net.encode_image(torch.stack(batch).to(self.device))
            out.append(feats.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))

    def encode_text(self, texts: list[str]) -> "np.ndarray":
        import open_clip
        import torch

        from cover_id.encoders.base import l2_normalize

        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        with torch.no_grad():
            feats = self.net.encode_text(self._tokenizer(texts).to(self.device))
        return l2_normalize(feats.float().cpu().numpy())
