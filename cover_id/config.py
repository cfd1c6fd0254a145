"""Settings: defaults < preset < YAML file < COVER_ID_* environment variables < flags.

The YAML file is ``--config FILE`` or ``cover-id.yaml`` in the working folder.
Keys are flat (``top_k: 25``); an environment variable is the key upper-cased
with a ``COVER_ID_`` prefix (``COVER_ID_TOP_K=50``). Every value is parsed by
its field's type in :class:`Settings` (``COVER_ID_API_KEY=0123`` is the text
"0123"; ``yes`` is only a boolean where a boolean is expected); a value of the
wrong type is one clear error. ``preset`` picks a named set of defaults
(:data:`PRESETS`); the preset and the resolved values are recorded with the
index (:func:`index_record`) and with every identify answer (:func:`identify_record`).
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from cover_id.errors import CoverIdError

DEFAULT_FILE = "cover-id.yaml"
ENV_PREFIX = "COVER_ID_"


@dataclass
class Settings:
    """Every setting cover-id reads, with its type and default (the README lists them too)."""

    preset: str = "default"  # a name in PRESETS
    # index
    encoder: str = "auto"  # auto: clip when its weights can be had, else local
    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"  # a tag, hf-hub:org/name, a file, or "none" (random weights)
    device: str = "cpu"
    batch_size: int = 32
    threads: int = 0  # 0: all cores, but never more than os.cpu_count()
    vote_index: str = "auto"  # keypoint votes: nn (every descriptor), words (inverted lists), auto by size
    # identify
    top_k: int = 25  # candidates retrieved per view (vector index) and by descriptor votes
    rerank_k: int = 15  # of those, how many are verified geometrically (rank-fused)
    max_side: int = 800  # photos are decoded at most this large (JPEG DCT scaling makes it cheap)
    detector: str = "quad"  # detector plugin
    detect_side: int = 400  # the cover outline is searched on a copy this large
    reranker: str = "geometric"  # re-ranker plugin (it names the decision policy)
    second_look: bool = True  # photos not accepted at first are looked at again, larger
    second_look_side: int = 1600  # ... this large
    # decision thresholds; None: the index's calibration, else the built-in defaults
    accept_score: float | None = None
    review_score: float | None = None
    accept_margin: float | None = None
    min_cosine: float | None = None
    min_explained: float | None = None
    explained_below: float | None = None
    # serve
    host: str = "127.0.0.1"
    port: int = 8500
    workers: int | None = None  # serve: photos identified at once (None: one per usable core)
    api_key: str | None = None
    max_upload_mb: float = 10
    cors_origins: list[str] = field(default_factory=list)
    # collectors
    prices: str | None = None  # a price file (JSON keyed by id or set code); catalog `price` fields work without it

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], preset: str | None = None) -> "Settings":
        """Defaults < the preset < ``values`` (each coerced to its field's type; unknown keys are ignored)."""
        name = str(preset or values.get("preset") or "default")
        merged: dict[str, Any] = {**preset_values(name), "preset": name}
        known = _types()
        for key, value in values.items():
            if key in known and key != "preset":
                if value is None and not _is_optional(known[key])[0]:
                    continue  # not given
                merged[key] = _coerce(key, value, known[key], key)
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # About twice as fast per photo: fewer candidates, no second look (small covers in large photos suffer).
    "fast": {"top_k": 15, "rerank_k": 8, "max_side": 640, "second_look": False},
    # More candidates and a larger second look: for large collections with many look-alikes.
    "accurate": {"top_k": 50, "rerank_k": 30, "second_look_side": 2000},
}

DEFAULTS: dict[str, Any] = Settings().as_dict()  # the built-in values as a plain dict

INDEX_KEYS = ("encoder", "model", "pretrained", "device", "batch_size", "vote_index")
IDENTIFY_KEYS = (
    "top_k",
    "rerank_k",
    "max_side",
    "detector",
    "detect_side",
    "reranker",
    "second_look",
    "second_look_side",
)


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise CoverIdError(f"unknown preset '{name}' (available: {', '.join(PRESETS)})")
    return dict(PRESETS[name])


def _types() -> dict[str, Any]:
    return get_type_hints(Settings)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return True, args[0]
    return False, tp


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """``value`` as the field's type; text (environment) is parsed, typed values (YAML, flags) are checked."""
    optional, base = _is_optional(tp)
    if value is None:
        if optional:
            return None
        return getattr(Settings(), key)  # "not given": the default
    if get_origin(base) is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
    elif base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(base, "a list")
    raise CoverIdError(f"setting {where}: expected {kind}, got {value!r}")


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
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    known = _types()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CoverIdError(f"config {path}: unknown setting {', '.join(unknown)} (known: {', '.join(known)})")
    return {k: _coerce(k, v, known[k], f"{k} in {path}") for k, v in data.items()}


def _read_env() -> dict[str, Any]:
    """``COVER_ID_<NAME>`` for every known setting, parsed by the field's type (never as YAML)."""
    out: dict[str, Any] = {}
    for name, tp in _types().items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        where = ENV_PREFIX + name.upper()
        if raw.strip() == "":
            if name == "pretrained":
                raise CoverIdError(
                    f"{where} is empty: unset it for the default weights, or say 'none' to ask for random weights"
                )
            optional, _ = _is_optional(tp)
            if not optional and name != "cors_origins":
                raise CoverIdError(f"{where} is empty: unset it for the default")
            out[name] = None if optional else []
            continue
        out[name] = _coerce(name, raw, tp, where)
    return out


def load_config(flags: Mapping[str, Any] | None = None, config_path: Path | None = None) -> Settings:
    """Merge every layer into typed :class:`Settings`; flags whose value is None count as not given."""
    layers: dict[str, Any] = {}
    path = config_path or _config_path
    if path is not None:
        if not Path(path).is_file():
            raise CoverIdError(f"config file not found: {path}")
        layers.update(_read_yaml(Path(path)))
    elif Path(DEFAULT_FILE).is_file():
        layers.update(_read_yaml(Path(DEFAULT_FILE)))
    layers.update(_read_env())
    layers.update({k: v for k, v in (flags or {}).items() if v is not None})
    preset = str(layers.get("preset") or "default")
    preset_values(preset)  # unknown preset: one clear error
    return Settings.from_mapping({k: v for k, v in layers.items() if k != "preset"}, preset=preset)


def load_settings(flags: Mapping[str, Any] | None = None, config_path: Path | None = None) -> dict[str, Any]:
    """:func:`load_config` as a plain dict (what commands pass along)."""
    return load_config(flags, config_path).as_dict()


def _record(settings: Mapping[str, Any] | Settings, keys: tuple[str, ...]) -> dict[str, Any]:
    s = settings if isinstance(settings, Settings) else Settings.from_mapping(settings)
    return {"preset": s.preset, **{k: getattr(s, k) for k in keys}}


def index_record(settings: Mapping[str, Any] | Settings) -> dict[str, Any]:
    """The preset and the resolved index settings, for the index manifest (``settings``)."""
    return _record(settings, INDEX_KEYS)


def identify_record(settings: Mapping[str, Any] | Settings) -> dict[str, Any]:
    """The preset and the resolved identify settings, for the JSON answer's ``settings``."""
    return _record(settings, IDENTIFY_KEYS)


def field_names() -> list[str]:
    return [f.name for f in fields(Settings)]
