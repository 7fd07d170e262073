"""Heads put on a backbone for clustering objectives.

ODCT's head (Alfani et al., Sec. IV; ODC's "neck"): FC 512 → BatchNorm → FC 256 →
ReLU → dropout, applied to the backbone's pooled features; its 256-d output is what
the Samples Memory stores. The classifier is one linear layer over the K pseudo-labels.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Sequential):
    """(N, in_dim) → (N, out_dim). Layer order as the ODCT paper lists it; the batch norm
    is ODC's (OpenSelfSup's NonLinearNeckV0): no affine parameters, running statistics
    with momentum 0.001."""

    def __init__(
        self, in_dim: int, hidden: int = 512, out_dim: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden, momentum=0.001, affine=False),
            nn.Linear(hidden, out_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class ClusterClassifier(nn.Linear):
    """(N, 256) → (N, K) logits over the pseudo-labels."""

    def __init__(self, in_dim: int, k: int) -> None:
        super().__init__(in_dim, k)
        nn.init.normal_(self.weight, std=0.01)  # ODC's ClsHead init
        nn.init.zeros_(self.bias)


class Network(nn.Module):
    """Backbone + head + classifier, trained together (one module for DDP / compile)."""

    def __init__(self, backbone: nn.Module, in_dim: int, k: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ProjectionHead(in_dim)
        self.classifier = ClusterClassifier(256, k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → 256-d features (B, 256) and logits (B, K)."""
        z = self.head(self.backbone(x))
        return z, self.classifier(z)
