"""Diagnostics at evaluation time: feature rank and an empirical Lipschitz estimate."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Effective rank (Kumar et al. 2021): smallest k with sum_{i<=k} s_i >= (1 - delta) * sum_i s_i;
    0 for features that are not finite (a diverged network: diagnostics never raise)."""
    if not torch.isfinite(features).all():
        return 0
    s = torch.linalg.svdvals(features.double())
    if s.sum() <= 0:
        return 0
    cumulative = torch.cumsum(s, 0) / s.sum()
    return int((cumulative < 1.0 - delta).sum().item()) + 1


def input_gradient_norms(net: nn.Module, q_values: Callable, states: torch.Tensor) -> torch.Tensor:
    """||d Q(x, a*) / d x|| per state, x the network's input scaled to [0, 1] (a* = greedy action)."""
    scale = net.obs_scale
    x = (states.float() * scale).requires_grad_(True)
    with torch.enable_grad():
        q = q_values(net, x / scale)
        q_star = q.max(dim=1).values.sum()
        (grad,) = torch.autograd.grad(q_star, x)
    return grad.flatten(1).norm(dim=1)


def diagnostics(net: nn.Module, q_values: Callable, states: np.ndarray, device: torch.device) -> dict[str, float]:
    """``diagnostics/srank``, ``diagnostics/lipschitz_mean`` and ``_max`` over evaluation states."""
    if len(states) == 0:
        return {}
    obs = torch.from_numpy(states).to(device)
    was_training = net.training
    net.eval()  # no power-iteration step from diagnostics
    try:
        with torch.no_grad():
            features = net.features(obs)
        norms = input_gradient_norms(net, q_values, obs)
    finally:
        net.train(was_training)
    return {"diagnostics/srank": float(srank(features)),
            "diagnostics/lipschitz_mean": float(norms.mean()), "diagnostics/lipschitz_max": float(norms.max())}
