"""PPO (Schulman et al. 2017) for discrete actions; defaults are CleanRL's Atari settings
(``ppo_atari.py``: 8 envs x 128 steps, 4 minibatches x 4 epochs, Adam 2.5e-4 annealed, eps 1e-5,
clip 0.1 with value clipping, entropy 0.01, value coef 0.5, max grad norm 0.5, gamma 0.99, lambda 0.95).

Algorithm box (units: agent steps, summed over the N envs)
  build   actor-critic (shared torso by default; ``separate_critic`` gives the critic its own) with
          the run's SN and rho scaling, and the optimiser
  act     sample a ~ pi(.|s) for all N envs in one forward pass, T steps per rollout; time-limit
          truncations bootstrap r + gamma V(final obs)
  learn   GAE advantages over the rollout; for each epoch and minibatch minimise
          L = clipped surrogate + vf_coef * (clipped) value loss - ent_coef * entropy;
          the learning rate anneals linearly to 0 over the run
  run     the shared run skeleton logs, evaluates and checkpoints at rollout boundaries

A2C (``a2c.py``) is this loop with one gradient step per rollout on its own loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from rlsmooth.config.families import ActorCriticConfig
from rlsmooth.config.coerce import require_all
from rlsmooth.config.sections import TrainConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces import seeding
from rlsmooth.pieces.networks import ActorCritic, build_actor_critic, heads_downstream
from rlsmooth.pieces.optim import RhoScaler, apply_spectral_setup, build_optimizer, optimizer_step, set_base_lr
from rlsmooth.pieces.policy_losses import gae, ppo_policy_loss, value_loss
from rlsmooth.pieces.replay.storage import torch_dtype
from rlsmooth.pieces.seeding import SeedStreams
from rlsmooth.training.checkpoint import restore
from rlsmooth.training.evaluation import eval_metrics, evaluate
from rlsmooth.training.skeleton import RunSkeleton, maybe_compile


@dataclass
class PPOConfig(ActorCriticConfig):
    num_minibatches: int = 4
    """Minibatches per epoch (minibatch size = N * T / num_minibatches)."""
    update_epochs: int = 4
    """Passes over each rollout."""
    clip_coef: float = 0.1
    """Policy ratio clip."""
    clip_value: bool = True
    """Clip the value update to +-clip_coef around the rollout's values."""

    def validate(self) -> None:
        super().validate()
        require_all([(self.num_minibatches >= 1, "algo.num_minibatches must be >= 1"),
                     (self.update_epochs >= 1, "algo.update_epochs must be >= 1"),
                     (self.clip_coef > 0, "algo.clip_coef must be > 0")])

    def check_against(self, cfg: TrainConfig) -> None:
        super().check_against(cfg)
        if cfg.env.num_envs * self.num_steps < self.num_minibatches:
            raise ConfigError(f"env.num_envs * algo.num_steps ({cfg.env.num_envs * self.num_steps}) is smaller "
                              f"than algo.num_minibatches ({self.num_minibatches})")


class Rollout(NamedTuple):
    obs: torch.Tensor        # (T*N, C, H, W) uint8 (float32 for gym envs)
    action: torch.Tensor     # (T*N,)
    logprob: torch.Tensor    # (T*N,) log pi_old(a|s)
    value: torch.Tensor      # (T*N,) V_old(s)
    advantage: torch.Tensor  # (T*N,)
    ret: torch.Tensor        # (T*N,) advantage + value


UpdateFn = Callable[[ActorCritic, torch.optim.Optimizer, "RhoScaler | None", Rollout, TrainConfig], dict]


# -- build and act ---------------------------------------------------------------------------------

def build(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> ActorCritic:
    return build_actor_critic(cfg.network, cfg.env.suite, obs_shape, num_actions, cfg.algo.separate_critic)


class ActorCriticLearner(NamedTuple):
    net: ActorCritic
    optimizer: torch.optim.Optimizer
    scaler: RhoScaler | None
    estimators: dict
    layers: dict


def build_actor_critic_learner(cfg: TrainConfig, obs_shape: tuple, num_actions: int, device: torch.device,
                               message: Callable[[str], None] = print) -> ActorCriticLearner:
    """The actor-critic network with the run's SN / rho scaling (divout divides the heads downstream
    of the rho layers), and the optimiser."""
    net = build(cfg, obs_shape, num_actions)
    net.precision = cfg.loop.precision
    setup = apply_spectral_setup(net, cfg, obs_shape)
    net.divout_heads = heads_downstream(setup.layers["rho_layers"], cfg.algo.separate_critic)
    net.to(device)
    optimizer = build_optimizer(list(net.parameters()), cfg.optim, setup.scaler)
    for name in setup.layers["normalised"] + setup.layers["rho_layers"]:
        if heads_downstream([name], cfg.algo.separate_critic) == ("actor", "critic"):
            message(f"note: layer {name} is shared by actor and critic; normalising or rescaling it changes both")
    return ActorCriticLearner(net, optimizer, setup.scaler, setup.estimators, setup.layers)


def sampling_policy(net: ActorCritic, device: torch.device, greedy: bool, generator: torch.Generator):
    """obs (N, ...) -> actions (N,): a ~ pi(.|s), or its argmax when ``greedy``."""
    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits, _ = net(torch.from_numpy(obs).to(device))
            if greedy:
                return logits.argmax(1).cpu().numpy()
            probs = torch.softmax(logits.float().cpu(), 1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(1).numpy()
    return policy


def load_policy(cfg: TrainConfig, state: dict, env, device: torch.device, greedy: bool = False):
    """Policy of a saved actor-critic run, for ``rlsmooth eval``."""
    learner = build_actor_critic_learner(cfg, env.obs_shape, env.num_actions, device, message=lambda m: None)
    restore(learner.net, state, "net")
    generator = torch.Generator().manual_seed(SeedStreams(cfg.seed).torch_seed(seeding.EVAL_CLI))
    return sampling_policy(learner.net, device, greedy or cfg.algo.eval_policy == "greedy", generator)


class RolloutBuffers:
    """One rollout's storage, allocated once.  Rewards and ends stay on the host during the rollout
    and cross to the device once per rollout, so each step makes one host-to-device copy (the
    observation) and one back (the actions)."""

    def __init__(self, horizon: int, n: int, obs_shape: tuple, device: torch.device, obs_dtype=np.uint8):
        self.obs = torch.zeros((horizon, n, *obs_shape), dtype=torch_dtype(obs_dtype), device=device)
        self.action = torch.zeros((horizon, n), dtype=torch.long, device=device)
        self.logprob, self.value = (torch.zeros((horizon, n), device=device) for _ in range(2))
        self.reward, self.done = np.zeros((horizon, n), np.float32), np.zeros((horizon, n), np.float32)


def collect_rollout(run: RunSkeleton, forward, net: ActorCritic, buffers: RolloutBuffers, gamma: float,
                    gae_lambda: float) -> Rollout:
    """T steps in the N envs with the current policy, then GAE over them (as SB3's collect_rollouts)."""
    device, horizon = run.device, buffers.obs.shape[0]
    net.eval()   # rollouts neither track gradients nor advance power iteration
    for t in range(horizon):
        obs_t = torch.from_numpy(run.obs).to(device, non_blocking=True)
        with torch.no_grad():
            logits, value = forward(obs_t)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
        buffers.obs[t], buffers.action[t] = obs_t, action
        buffers.logprob[t], buffers.value[t] = dist.log_prob(action), value
        out = run.env.step(action.cpu().numpy())
        reward = out.reward.astype(np.float32)
        truncated = out.episode_end & ~out.terminal
        if truncated.any():   # bootstrap through time limits: r + gamma V(final obs)
            with torch.no_grad():
                _, final_value = net(torch.from_numpy(out.final_obs[truncated]).to(device))
            reward[truncated] += gamma * final_value.cpu().numpy()
        buffers.reward[t], buffers.done[t] = reward, out.terminal | out.episode_end
        run.episodes.record(out)
        run.obs = out.obs
    with torch.no_grad():
        _, last_value = net(torch.from_numpy(run.obs).to(device))
    reward_done = torch.from_numpy(np.stack([buffers.reward, buffers.done])).to(device)
    advantage, ret = gae(reward_done[0], buffers.value, reward_done[1], last_value, gamma, gae_lambda)
    return Rollout(buffers.obs.flatten(0, 1), buffers.action.flatten(), buffers.logprob.flatten(),
                   buffers.value.flatten(), advantage.flatten(), ret.flatten())


# -- learn ------------------------------------------------------------------------------------------

def update(net: ActorCritic, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None, rollout: Rollout,
           cfg: TrainConfig) -> dict:
    algo = cfg.algo
    size = rollout.action.shape[0]
    minibatch = size // algo.num_minibatches
    stats = {"pg": 0.0, "v": 0.0, "ent": 0.0, "kl": 0.0, "clipfrac": 0.0}
    sums = {k: torch.zeros((), device=rollout.value.device) for k in stats}
    count = 0
    rho_sums: dict[str, torch.Tensor] = {}   # the rho layers' optim/* metrics, averaged over minibatches
    for _ in range(algo.update_epochs):
        order = torch.randperm(size, device=rollout.value.device)
        for start in range(0, minibatch * algo.num_minibatches, minibatch):
            idx = order[start:start + minibatch]
            logits, value = net(rollout.obs[idx])
            dist = torch.distributions.Categorical(logits=logits)
            logprob = dist.log_prob(rollout.action[idx])
            adv = rollout.advantage[idx]
            if algo.norm_adv and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = ppo_policy_loss(logprob, rollout.logprob[idx], adv, algo.clip_coef)
            v = value_loss(value, rollout.ret[idx], rollout.value[idx], algo.clip_coef if algo.clip_value else 0.0)
            ent = dist.entropy().mean()
            loss = pg + algo.vf_coef * v - algo.ent_coef * ent
            for key, value in optimizer_step(net, optimizer, scaler, loss, cfg.optim.grad_clip).items():
                rho_sums[key] = rho_sums[key] + value if key in rho_sums else value.clone()
            with torch.no_grad():
                log_ratio = logprob - rollout.logprob[idx]
                sums["kl"] += ((log_ratio.exp() - 1) - log_ratio).mean()
                sums["clipfrac"] += ((log_ratio.exp() - 1).abs() > algo.clip_coef).float().mean()
                sums["pg"] += pg.detach()
                sums["v"] += v.detach()
                sums["ent"] += ent.detach()
            count += 1
    names = {"pg": "train/policy_loss", "v": "train/value_loss", "ent": "train/entropy", "kl": "train/approx_kl",
             "clipfrac": "train/clipfrac"}
    # device tensors: read on the host at log steps only
    return {**{names[k]: x / count for k, x in sums.items()}, **{k: x / count for k, x in rho_sums.items()}}


# -- the loop --------------------------------------------------------------------------------------

def evaluator(run: RunSkeleton, net: ActorCritic) -> Callable[[], dict[str, float]]:
    """One evaluation phase with the sampled policy, its argmax, or both (``algo.eval_policy``)."""
    cfg, algo = run.cfg, run.cfg.algo

    def run_eval() -> dict[str, float]:
        metrics: dict[str, float] = {}
        for greedy in {"sampled": (False,), "greedy": (True,), "both": (False, True)}[algo.eval_policy]:
            generator = torch.Generator().manual_seed(run.streams.torch_seed(seeding.EVAL_POLICY, run.step))
            result = evaluate(run.eval_env, sampling_policy(net, run.device, greedy, generator), cfg.loop.eval_steps,
                              cfg.loop.eval_episodes, keep_states=0, progress=cfg.loop.progress)
            found = eval_metrics(result, cfg.env.suite, cfg.env.game)
            if greedy and algo.eval_policy == "both":
                found = {k.replace("eval/", "eval/greedy/"): v for k, v in found.items()}
            metrics.update(found)
        return metrics
    return run_eval


def train_on_policy(cfg: TrainConfig, run_dir: Path | None, update: UpdateFn, resume: bool = False,
                    sinks: list | None = None) -> dict:
    """The on-policy loop PPO and A2C share: rollout, GAE, ``update``, learning-rate annealing."""
    algo, loop = cfg.algo, cfg.loop
    run = RunSkeleton(cfg, run_dir, resume, loop.total_steps, sinks)
    messages: list[str] = []
    learner = build_actor_critic_learner(cfg, run.env.obs_shape, run.env.num_actions, run.device,
                                         message=messages.append)
    net, optimizer = learner.net, learner.optimizer
    forward = maybe_compile(net, loop.compile, run.device)   # the same parameters, compiled forward
    run.begin({"net": net, "optimizer": optimizer}, learner.layers, learner.estimators, counters={"iteration": 0},
              messages=messages)
    batch = cfg.env.num_envs * algo.num_steps
    num_iterations = loop.total_steps // batch   # an exact multiple: checked at load
    buffers = RolloutBuffers(algo.num_steps, cfg.env.num_envs, run.env.obs_shape, run.device, run.env.obs_dtype)
    run_eval = evaluator(run, net)
    with run.guard() as stop:
        while run.running():
            iteration = run.counters["iteration"]
            set_base_lr(optimizer, cfg.optim.lr * (1.0 - iteration / num_iterations if algo.anneal_lr else 1.0))
            rollout = collect_rollout(run, forward, net, buffers, algo.gamma, algo.gae_lambda)
            net.train()
            update_metrics = update(forward, optimizer, learner.scaler, rollout, cfg)
            run.counters["iteration"] += 1
            final = run.advance(batch) >= loop.total_steps
            run.log_if_due(final, lambda: {"train/lr": optimizer.param_groups[0]["base_lr"],
                                           **{k: float(v) for k, v in update_metrics.items()}})
            run.end_of_iteration(final, run_eval, stop)
    return run.finish()


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, sinks: list | None = None) -> dict:
    return train_on_policy(cfg, run_dir, update, resume, sinks)


FAMILY = "actor_critic"
CONFIG = PPOConfig
PRESETS = {"atari": "atari_ppo.yaml", "minatar": "minatar_ppo.yaml", "test": "minatar_ppo.yaml"}
"""The suite's preset for this agent (configs/), which the bench starts from."""
