"""Fitting the head on a bank: SupCon with K x M batches, keeping the best held-out epoch."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cover_id.training.head import head_to_projection, make_head
from cover_id.training.loss import supcon_loss
from cover_id.training.sampler import KMSampler

if TYPE_CHECKING:
    import numpy as np

    from cover_id.training.bank import Bank
    from cover_id.training.projection import Projection


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 1e-3
    k: int = 16  # classes per batch
    m: int = 4  # vectors per class per batch
    views: int = 6  # augmented views per reference in the bank
    holdout: int = 2  # photo-like views per reference kept aside for the before/after margins
    hidden: int = 256
    temperature: float = 0.1
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    keep_best: bool = True  # keep the epoch (0 = the encoder alone) that does best on the held-out views


def retrieval_margins(refs: np.ndarray, queries: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Cosine to the own reference minus the best other one, per query; plus top-1."""
    import numpy as np

    if not len(queries):
        return {"n": 0}
    sims = queries @ refs.T
    rows = np.arange(len(queries))
    own = sims[rows, labels].copy()
    sims[rows, labels] = -np.inf
    margin = own - sims.max(axis=1)
    q = np.percentile(margin, [10, 50, 90])
    return {
        "n": len(margin),
        "median": round(float(q[1]), 4),
        "p10": round(float(q[0]), 4),
        "p90": round(float(q[2]), 4),
        "mean": round(float(margin.mean()), 4),
        "top1": round(float((margin > 0).mean()), 4),
    }


@dataclass
class TrainResult:
    projection: Projection
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    epochs_done: int = 0
    kept_epoch: int = 0
    interrupted: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def train_on_bank(
    bank: Bank,
    encoder_spec: dict[str, Any],
    cfg: TrainConfig,
    show_progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit the head on a bank; Ctrl-C stops early and still returns a usable head."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    d = int(bank.vectors.shape[1])
    head = make_head(d, cfg.hidden, seed=cfg.seed).to(device)
    sampler = KMSampler(bank.labels, cfg.k, cfg.m, seed=cfg.seed, clean=bank.clean)
    x_all = torch.from_numpy(bank.vectors).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * sampler.steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    losses: list[float] = []
    interrupted = False
    epochs_done = 0
    refs_t = torch.from_numpy(bank.references).to(device)
    hold_t = torch.from_numpy(bank.holdout).to(device)
    hold_y = np.asarray(bank.holdout_labels)

    def held_out_score() -> tuple[float, float]:
        """(top-1, mean margin) on the held-out views: picks the epoch to keep."""
        if not len(hold_y):
            return (0.0, 0.0)
        with torch.no_grad():
            m = retrieval_margins(head(refs_t).cpu().numpy(), head(hold_t).cpu().numpy(), hold_y)
        return (m["top1"], m["mean"])

    import copy

    best_score, best_state, best_epoch = held_out_score(), copy.deepcopy(head.state_dict()), 0

    from cover_id.progress import progress

    with progress(total, "training", show_progress) as advance:
        try:
            for epoch in range(cfg.epochs):
                run = []
                for rows, labels in sampler.epoch():
                    z = head(x_all[torch.from_numpy(rows).to(device)])
                    loss = supcon_loss(z, torch.from_numpy(labels).to(device), cfg.temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    run.append(float(loss.detach()))
                    advance(info=f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(run):.3f}")
                losses.append(float(np.mean(run)))
                epochs_done = epoch + 1
                score = held_out_score()
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy.deepcopy(head.state_dict()), epochs_done
        except KeyboardInterrupt:
            interrupted = True
    if cfg.keep_best:
        head.load_state_dict(best_state)
    head.eval()
    info = {
        **(meta or {}),
        "config": asdict(cfg),
        "classes": len(sampler.classes),
        "bank_vectors": len(bank.vectors),
        "epochs_done": epochs_done,
        "kept_epoch": best_epoch if cfg.keep_best else epochs_done,
        "interrupted": interrupted,
        "final_loss": round(losses[-1], 4) if losses else None,
        "in_dim": d,
        "out_dim": d,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    proj = head_to_projection(head, encoder_spec, info)
    refs = bank.references
    before = retrieval_margins(refs, bank.holdout, bank.holdout_labels)
    after = (
        retrieval_margins(proj.apply(refs), proj.apply(bank.holdout), bank.holdout_labels) if len(bank.holdout) else {}
    )
    proj.meta["margins"] = {"before": before, "after": after}
    return TrainResult(
        proj, losses, epochs_done, proj.meta["kept_epoch"], interrupted, before, after, time.perf_counter() - t0
    )
