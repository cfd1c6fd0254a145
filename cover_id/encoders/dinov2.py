"""The ``dinov2`` encoder: a DINOv2 vision transformer (through ``timm``), image tower only.

DINOv2 is self-supervised on images alone: its global vector describes what an
image *looks like* (layout, texture, artwork), which suits matching printed
artwork such as banners, posters and card art. It has no text tower.

Weights are never downloaded here: ``pretrained`` is a local file (a state
dict as ``.safetensors``, ``.pth``/``.pt`` or ``.bin``, timm's or Meta's own
layout), a timm tag (``lvd142m``) or ``hf-hub:org/name`` found in the local
Hugging Face cache, or ``none`` for seeded random weights (tests). Anything
else is one clear error at once (no hub is contacted, so nothing can hang).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.encoders.base import Encoder
from cover_id.encoders.clip import DEFAULT_MODEL as CLIP_DEFAULT_MODEL
from cover_id.encoders.clip import DEFAULT_PRETRAINED as CLIP_DEFAULT_PRETRAINED
from cover_id.encoders.clip import _file_fingerprint
from cover_id.errors import CoverIdError, WeightsUnavailableError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "vit_small_patch14_dinov2"
DEFAULT_TAG = "lvd142m"
IMAGE_SIZE = 224  # DINOv2 works at any multiple of 14; 224 is ~5x cheaper than its native 518 on a CPU
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
RANDOM = (None, "", "none", "None")


def _model_name(model: str | None) -> str:
    """The timm architecture; the CLIP default (the shared ``model`` setting's default) means "ours"."""
    if not model or model == CLIP_DEFAULT_MODEL:
        return DEFAULT_MODEL
    import timm

    arch = model.split(".")[0]
    known = [m for m in timm.list_models("*dinov2*")]
    if arch not in known:
        raise CoverIdError(f"unknown DINOv2 model '{model}' (known: {', '.join(known)})")
    return arch


def _hub_repo(model: str, pretrained: str) -> str:
    """The Hugging Face repo holding a tag's weights (``hf-hub:org/name`` or ``timm/<model>.<tag>``)."""
    if pretrained.startswith("hf-hub:"):
        return pretrained[len("hf-hub:") :]
    tag = DEFAULT_TAG if pretrained in ("default", CLIP_DEFAULT_PRETRAINED) else pretrained
    import timm

    known = [p.split(".", 1)[1] for p in timm.list_pretrained(f"{model}.*")]
    if tag not in known:
        raise CoverIdError(f"unknown DINOv2 weights '{pretrained}' for {model} (known: {', '.join(known) or 'none'})")
    return f"timm/{model}.{tag}"


def cached_weights(model: str, pretrained: str) -> Path | None:
    """The weights file of a tag in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo = _hub_repo(model, pretrained)
    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


class DinoV2Encoder(Encoder):
    """DINOv2 CLS-token vectors; ``pretrained`` a file, a cached tag, or ``none`` (seeded random weights)."""

    name = "dinov2"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_TAG,
        device: str = "cpu",
        batch_size: int = 32,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        import torch

        arch = _model_name(model)
        if image_size < 14 or image_size % 14:
            raise CoverIdError(f"DINOv2 image_size must be a multiple of 14 (got {image_size})")
        self.model = arch
        self.device = device
        self.batch_size = batch_size
        self.image_size = image_size
        weights_file: Path | None = None
        if pretrained in RANDOM:
            self.pretrained: str | None = None
            self.weights = "random:seed0"
        elif Path(str(pretrained)).expanduser().is_file():
            weights_file = Path(str(pretrained)).expanduser()
            self.pretrained = str(pretrained)
            self.weights = _file_fingerprint(weights_file)
        else:
            assert pretrained is not None
            weights_file = cached_weights(arch, pretrained)
            if weights_file is None:
                raise WeightsUnavailableError(
                    f"DINOv2 weights {arch}/{pretrained} are not in the local cache (cover-id never downloads "
                    "them); pass --pretrained /path/to/model.safetensors, or use --encoder local"
                )
            self.pretrained = "hf-hub:" + _hub_repo(arch, pretrained)
            self.weights = f"{self.pretrained}:{weights_file.name}:{_file_fingerprint(weights_file)}"
        self.net = self._build(arch, weights_file)
        self.net.eval().to(device)
        with torch.no_grad():
            probe = self.net(torch.zeros(1, 3, image_size, image_size, device=device))
        self._dim = int(probe.shape[-1])

    def _build(self, arch: str, weights_file: Path | None) -> Any:
        import timm
        import torch

        if weights_file is None:
            torch.manual_seed(0)  # random weights, but the same ones every time
            return timm.create_model(arch, pretrained=False, num_classes=0, img_size=self.image_size)
        try:
            # timm's own loader: it converts Meta's layout and resizes the position embedding.
            return timm.create_model(
                arch,
                pretrained=True,
                num_classes=0,
                img_size=self.image_size,
                pretrained_cfg_overlay={"file": str(weights_file), "hf_hub_id": None, "url": None},
            )
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CoverIdError(f"could not load DINOv2 weights {weights_file.name}: {first[:300]}") from None

    @property
    def dim(self) -> int:
        return self._dim

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": {"model": self.model, "pretrained": self.pretrained, "image_size": self.image_size},
            "dim": self.dim,
            "weights": self.weights,
        }

    def encode_images(self, images: "list[np.ndarray]") -> "np.ndarray":
        """The whole image squashed to a square (a cover is never cropped), ImageNet-normalised."""
        import cv2
        import numpy as np
        import torch

        from cover_id.encoders.base import l2_normalize

        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        s = self.image_size
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = []
            for img in images[start : start + self.batch_size]:
                if img.ndim == 2:
                    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
                rgb = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32) / 255
                batch.append(((rgb - mean) / std).transpose(2, 0, 1))
            with torch.no_grad():
                feats = self.net(torch.from_numpy(np.stack(batch)).to(self.device))
            out.append(feats.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))
