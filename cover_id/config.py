"""Settings: defaults < YAML file < COVER_ID_* environment variables < flags.

The YAML file is ``--config FILE`` or ``cover-id.yaml`` in the working folder.
Keys are flat (``top_k: 25``); an environment variable is the key upper-cased
with a ``COVER_ID_`` prefix (``COVER_ID_TOP_K=50``), its value parsed as YAML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError

DEFAULTS: dict[str, Any] = {
    # index
    "encoder": "auto",
    "model": "ViT-B-32",
    "pretrained": "laion2b_s34b_b79k",
    "device": "cpu",
    "batch_size": 32,
    "threads": 0,  # 0: all cores, but never more than os.cpu_count()
    # identify
    "top_k": 25,  # candidates retrieved per view (FAISS) and by descriptor votes
    "rerank_k": 15,  # of those, how many are verified geometrically (rank-fused)
    "second_look": True,  # photos not accepted at first are looked at again at 1600 px
    "detect_side": 400,  # the cover outline is searched on a copy this large
    "max_side": 800,  # photos are decoded at most this large (JPEG DCT scaling makes it cheap)
    "accept_score": None,  # None: the index's calibration, else built-in defaults
    "review_score": None,
    # serve
    "host": "127.0.0.1",
    "port": 8500,
    "workers": 1,
    "api_key": None,
    "max_upload_mb": 10,
    "cors_origins": [],
}

DEFAULT_FILE = "cover-id.yaml"
ENV_PREFIX = "COVER_ID_"

_config_path: Path | None = None


def set_config_path(path: Path | None) -> None:
    """Remember ``--config`` from the top-level command for every subcommand."""
    global _config_path
    _config_path = path


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise CoverIdError(f"config {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CoverIdError(f"config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CoverIdError(f"config {path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _read_env() -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for key, raw in os.environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        try:
            out[name] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            out[name] = raw
    return out


def load_settings(flags: dict[str, Any] | None = None, config_path: Path | None = None) -> dict[str, Any]:
    """Merge every layer; flags whose value is None count as not given."""
    settings = dict(DEFAULTS)
    path = config_path or _config_path
    if path is not None:
        if not Path(path).is_file():
            raise CoverIdError(f"config file not found: {path}")
        settings.update(_read_yaml(Path(path)))
    elif Path(DEFAULT_FILE).is_file():
        settings.update(_read_yaml(Path(DEFAULT_FILE)))
    settings.update(_read_env())
    settings.update({k: v for k, v in (flags or {}).items() if v is not None})
    return settings
