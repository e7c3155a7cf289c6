"""Actor-critic losses as small pure functions: GAE, the PPO surrogate and value losses, the A2C loss."""
from __future__ import annotations

import torch

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


def a2c_loss(logprob: torch.Tensor, advantage: torch.Tensor, value: torch.Tensor, ret: torch.Tensor,
             entropy: torch.Tensor, vf_coef: float, ent_coef: float) -> tuple[torch.Tensor, ...]:
    """L = -mean(log pi(a|s) A) + vf_coef * mean((R - V(s))^2) - ent_coef * mean(H[pi(.|s)]).

    The value term is the plain mean squared error, as in Stable-Baselines3's A2C
    (``vf_coef * F.mse_loss(returns, values)``), not half of it.
    Returns (loss, policy loss, value loss, entropy).
    """
    pg = -(logprob * advantage).mean()
    v = (ret - value).square().mean()
    ent = entropy.mean()
    return pg + vf_coef * v - ent_coef * ent, pg, v, ent
