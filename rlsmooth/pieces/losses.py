"""TD losses and the C51 projection as small pure functions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def td_target(reward: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """y = R + discount * max_a' Q_target(s', a'); ``discount`` already holds gamma^k or 0."""
    return reward + discount * next_q.max(dim=1).values


def double_td_target(reward: torch.Tensor, discount: torch.Tensor, next_q_target: torch.Tensor,
                     next_q_online: torch.Tensor) -> torch.Tensor:
    """Double DQN: the online network picks a', the target network evaluates it."""
    a = next_q_online.argmax(dim=1, keepdim=True)
    return reward + discount * next_q_target.gather(1, a).squeeze(1)


def q_loss(q: torch.Tensor, action: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean TD loss of Q(s, a) against a (detached) target; ``kind`` is 'huber' or 'mse'."""
    q_sa = q.gather(1, action[:, None]).squeeze(1)
    target = target.detach()
    if kind == "huber":
        return F.smooth_l1_loss(q_sa, target)
    return F.mse_loss(q_sa, target)


def categorical_projection(next_probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """Project the distribution R + discount * Z(s') onto the fixed ``support`` (Bellemare et al. 2017).

    next_probs: (B, atoms) probabilities of Z(s', a*); returns (B, atoms) projected probabilities.
    """
    v_min, v_max = support[0], support[-1]
    atoms = support.numel()
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
    return projected


def categorical_loss(logits: torch.Tensor, action: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between projected target probabilities and the predicted distribution of (s, a)."""
    logits_sa = logits[torch.arange(logits.shape[0], device=logits.device), action]   # (B, atoms)
    return -(target_probs.detach() * F.log_softmax(logits_sa, dim=1)).sum(1).mean()


# ---------------------------------------------------------------------------------------
# Actor-critic
# ---------------------------------------------------------------------------------------

def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a (T, N) rollout (Schulman et al. 2016), without a loop.

    ``dones[t]`` = 1 when the transition at t ends the bootstrap (terminal, or truncation whose
    bootstrap value was already folded into ``rewards[t]``).  With
    delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t, the recursion A_t = delta_t + gamma lam (1 - d_t) A_{t+1}
    unrolls to A_t = sum_{j >= t} (gamma lam)^(j - t) [no done in t .. j-1] delta_j: one (T, T) weight
    matrix per env, built from the cumulative count of dones.  Returns (advantages, returns).
    """
    steps = rewards.shape[0]
    next_values = torch.cat([values[1:], last_value[None]], 0)
    deltas = rewards + gamma * next_values * (1.0 - dones) - values
    t = torch.arange(steps, device=rewards.device)
    ahead = (t[None, :] - t[:, None]).to(rewards.dtype)                      # j - t
    done_before = torch.cat([torch.zeros_like(dones[:1]), dones.cumsum(0)], 0)   # dones in [0, t)
    # dones in [t, j) = done_before[j] - done_before[t]; weights vanish for j < t and across a done
    crossed = done_before[None, :steps] - done_before[:steps, None]            # (T, T, N)
    weights = torch.where((ahead[..., None] >= 0) & (crossed == 0), (gamma * lam) ** ahead.clamp_min(0)[..., None],
                          torch.zeros((), dtype=rewards.dtype, device=rewards.device))
    advantages = torch.einsum("tjn,jn->tn", weights, deltas)
    return advantages, advantages + values


def ppo_policy_loss(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor,
                    clip: float) -> torch.Tensor:
    """Clipped surrogate objective, as a loss: mean(max(-A r, -A clip(r, 1-c, 1+c)))."""
    ratio = torch.exp(new_logprob - old_logprob)
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()


def value_loss(new_value: torch.Tensor, returns: torch.Tensor, old_value: torch.Tensor | None = None,
               clip: float = 0.0) -> torch.Tensor:
    """0.5 * mean squared error; with ``clip`` > 0 the PPO clipped value loss (max of both errors)."""
    unclipped = (new_value - returns).square()
    if old_value is None or clip <= 0:
        return 0.5 * unclipped.mean()
    clipped = old_value + (new_value - old_value).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (clipped - returns).square()).mean()
