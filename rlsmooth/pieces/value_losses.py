"""Value-based losses as small pure functions: TD targets and losses, the C51 projection and loss.

Every function takes a batch along its last batch dimension and may have leading dimensions in
front of it (a population's members): losses are means over the batch, one per leading index.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def td_target(reward: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """y = R + discount * max_a' Q_target(s', a'); ``discount`` already holds gamma^k or 0."""
    return reward + discount * next_q.max(dim=-1).values


def double_td_target(reward: torch.Tensor, discount: torch.Tensor, next_q_target: torch.Tensor,
                     next_q_online: torch.Tensor) -> torch.Tensor:
    """Double DQN: the online network picks a', the target network evaluates it."""
    a = next_q_online.argmax(dim=-1, keepdim=True)
    return reward + discount * next_q_target.gather(-1, a).squeeze(-1)


def q_loss(q: torch.Tensor, action: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean TD loss of Q(s, a) against a (detached) target over the batch; ``kind`` is 'huber' or 'mse'."""
    q_sa = q.gather(-1, action[..., None]).squeeze(-1)
    target = target.detach()
    if kind == "huber":
        return F.smooth_l1_loss(q_sa, target, reduction="none").mean(-1)
    return F.mse_loss(q_sa, target, reduction="none").mean(-1)


def categorical_projection(next_probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """Project the distribution R + discount * Z(s') onto the fixed ``support`` (Bellemare et al. 2017).

    next_probs: (..., B, atoms) probabilities of Z(s', a*); returns projected probabilities of that shape.
    """
    shape = next_probs.shape
    atoms = support.numel()
    next_probs, reward, discount = next_probs.reshape(-1, atoms), reward.reshape(-1), discount.reshape(-1)
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (atoms - 1)
    tz = (reward[:, None] + discount[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / delta                       # fractional atom index in [0, atoms-1]
    lower = b.floor().long()
    upper = b.ceil().long()
    # when b is an integer, lower == upper and all mass goes to that atom
    w_upper = b - lower.to(b.dtype)
    w_lower = 1.0 - w_upper
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower, next_probs * w_lower)
    projected.scatter_add_(1, upper, next_probs * w_upper)
    return projected.view(shape)


def categorical_loss(logits: torch.Tensor, action: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between projected target probabilities and the predicted distribution of (s, a),
    averaged over the batch.  logits: (..., B, A, atoms); action: (..., B); target_probs: (..., B, atoms)."""
    logits_sa = pick_action(logits, action)
    return -(target_probs.detach() * F.log_softmax(logits_sa, dim=-1)).sum(-1).mean(-1)


def pick_action(per_action: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """(..., A, atoms) values of each action -> (..., atoms) of the chosen ``action`` (...)."""
    index = action[..., None, None].expand(*action.shape, 1, per_action.shape[-1])
    return per_action.gather(-2, index).squeeze(-2)
