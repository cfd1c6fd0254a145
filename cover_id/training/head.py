"""The projection head: a residual MLP that starts as the identity, and its numpy form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cover_id.training.projection import Projection


def make_head(d_in: int, hidden: int, d_out: int | None = None, seed: int = 0) -> torch.nn.Module:
    """Linear -> ReLU -> Linear (+ input when the sizes agree), L2-normalised output."""
    import torch
    from torch import nn

    out_dim = d_out or d_in

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1 = nn.Linear(d_in, hidden)
            self.l2 = nn.Linear(hidden, out_dim)
            self.residual = out_dim == d_in
            if self.residual:  # start as the identity: the encoder's own geometry
                nn.init.zeros_(self.l2.weight)
                nn.init.zeros_(self.l2.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.l2(torch.relu(self.l1(x)))
            if self.residual:
                h = h + x
            return nn.functional.normalize(h, dim=1)

    torch.manual_seed(seed)
    return Head()


def head_to_projection(head: torch.nn.Module, encoder_spec: dict[str, Any], meta: dict[str, Any]) -> Projection:
    from cover_id.training.projection import Projection

    layers: Any = head  # the Head made by make_head: l1, l2, residual

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().float().numpy().copy()

    return Projection(
        weights=[arr(layers.l1.weight), arr(layers.l2.weight)],
        biases=[arr(layers.l1.bias), arr(layers.l2.bias)],
        encoder=dict(encoder_spec),
        residual=bool(layers.residual),
        meta=meta,
    )
