"""``cover-id train``, the recipe: references -> bank of encoded views -> fitted head -> head file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError
from cover_id.training.bank import build_bank
from cover_id.training.fit import TrainConfig, TrainResult, train_on_bank
from cover_id.training.sources import source_from_index, source_from_refs


def train(
    out: Path,
    refs: Path | None = None,
    index: Path | None = None,
    cfg: TrainConfig | None = None,
    settings: dict[str, Any] | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Bank, train, save ``out``; returns the result (margins before/after on held-out views)."""
    import torch

    from cover_id.runtime import set_threads, thread_count
    from cover_id.training.projection import save_projection

    cfg = cfg or TrainConfig()
    if (refs is None) == (index is None):
        raise CoverIdError("give exactly one of --refs DIR or --index INDEX")
    if cfg.epochs < 1:
        raise CoverIdError("--epochs must be at least 1")
    if cfg.views < 1:
        raise CoverIdError("--bank-views must be at least 1")
    set_threads((settings or {}).get("threads"))
    torch.set_num_threads(thread_count((settings or {}).get("threads")))
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise CoverIdError(f"device '{cfg.device}' is not available here; use --device cpu")
    if index is not None:
        src = source_from_index(index, cfg.device)
    else:
        assert refs is not None  # exactly one of the two was checked above
        src = source_from_refs(refs, settings or {}, show_progress)
    try:
        bank = build_bank(src.encoder, src.load, src.n, src.clean, cfg.views, cfg.holdout, cfg.seed, show_progress)
    except KeyboardInterrupt:
        raise CoverIdError("interrupted while encoding views, before training started: nothing saved") from None
    meta = {"source": src.describe, "bank_seconds": round(bank.seconds, 1)}
    result = train_on_bank(bank, src.spec, cfg, show_progress, meta)
    save_projection(result.projection, Path(out))
    return result
