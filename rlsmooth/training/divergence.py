"""Divergence is a result, not a crash: what in a run has become non-finite, found with one host sync."""
from __future__ import annotations

import math

import torch
from torch import nn


def nonfinite_parameters(net: nn.Module) -> list[str]:
    """Names of the layers (parameter owners) of ``net`` holding a NaN or infinity; [] when all are finite."""
    params = list(net.named_parameters())
    if not params:
        return []
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in params]).cpu().tolist()   # one sync
    names = []
    for (name, _), ok in zip(params, finite):
        owner = name.replace(".parametrizations.weight.original", "").rsplit(".", 1)[0]
        if not ok and owner not in names:
            names.append(owner)
    return names


def nonfinite_metrics(record: dict[str, float]) -> list[str]:
    """Keys of a log record (losses, Q-values ...) whose value is not finite."""
    return [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
