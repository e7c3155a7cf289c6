"""Actor-critic network and the on-policy training loop shared by PPO and A2C.

Layers are named by role: ``torso.conv1`` ... ``torso.fc`` (shared by default), ``actor.out``,
``critic.out``, and with a separate critic network ``critic.conv1`` ... ``critic.fc``.  So
spectral normalisation can target exactly the critic (``critic.fc``) or shared layers.

One iteration: roll out T steps in N envs (one batched forward pass per step), compute GAE,
run the agent's update on the N*T batch, anneal the learning rate; log, evaluate and
checkpoint on agent-step intervals (at iteration boundaries).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from rlsmooth.config import TrainConfig
from rlsmooth.pieces.losses import gae
from rlsmooth.pieces.networks import make_torso, torso_forward
from rlsmooth.pieces.optim import RhoScaler, apply_spectral_setup, build_optimizer, set_base_lr
from rlsmooth.training import seeding
from rlsmooth.training.checkpoint import restore
from rlsmooth.training.evaluation import eval_metrics, evaluate
from rlsmooth.training.seeding import SeedStreams
from rlsmooth.training.skeleton import RunSkeleton, maybe_compile


def orthogonal_init(layer: nn.Module, gain: float) -> None:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """Torso + ``actor.out`` (logits) and ``critic.out`` (value); CleanRL's orthogonal init."""

    def __init__(self, make: Callable[[], nn.Module], num_actions: int, separate_critic: bool, obs_scale: float):
        super().__init__()
        self.torso = make()
        self.conv_names, self.fc_names = self.torso.conv_names, self.torso.fc_names
        self.actor = nn.Module()
        self.actor.out = nn.Linear(self.torso.out_features, num_actions)
        self.critic = nn.Module()
        self.separate_critic = separate_critic
        if separate_critic:
            for name, layer in make().named_children():   # critic.conv1 ... critic.fc
                self.critic.add_module(name, layer)
        self.critic.out = nn.Linear(self.torso.out_features, 1)
        self.obs_scale = obs_scale
        self.output_divisor: Callable[[], torch.Tensor] | None = None
        self.divout_heads: tuple[str, ...] = ()
        for name, layer in self.named_modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                gain = 0.01 if name == "actor.out" else 1.0 if name == "critic.out" else 2 ** 0.5
                orthogonal_init(layer, gain)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.float() * self.obs_scale
        features = torso_forward(self.torso, x, self.conv_names, self.fc_names)
        critic_features = (torso_forward(self.critic, x, self.conv_names, self.fc_names) if self.separate_critic
                           else features)
        logits = self.actor.out(features)
        value = self.critic.out(critic_features).squeeze(-1)
        if self.output_divisor is not None:
            rho = self.output_divisor().detach()
            logits = logits / rho if "actor" in self.divout_heads else logits
            value = value / rho if "critic" in self.divout_heads else value
        return logits, value


def heads_downstream(layers: list[str], separate_critic: bool) -> tuple[str, ...]:
    """Which heads' outputs a layer feeds: torso layers feed the actor, and the critic if shared."""
    heads = set()
    for name in layers:
        if name.startswith("critic."):
            heads.add("critic")
        elif name.startswith("actor."):
            heads.add("actor")
        else:
            heads.update(("actor",) if separate_critic else ("actor", "critic"))
    return tuple(sorted(heads))


def build_actor_critic(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> ActorCritic:
    return ActorCritic(lambda: make_torso(cfg.network, cfg.env.suite, obs_shape), num_actions,
                       cfg.algo.separate_critic, 1.0 / 255.0 if cfg.env.suite == "atari" else 1.0)


class Rollout(NamedTuple):
    obs: torch.Tensor        # (T*N, C, H, W) uint8
    action: torch.Tensor     # (T*N,)
    logprob: torch.Tensor    # (T*N,) log pi_old(a|s)
    value: torch.Tensor      # (T*N,) V_old(s)
    advantage: torch.Tensor  # (T*N,)
    ret: torch.Tensor        # (T*N,) advantage + value


UpdateFn = Callable[[ActorCritic, torch.optim.Optimizer, "RhoScaler | None", Rollout, TrainConfig], dict]


class Learner(NamedTuple):
    net: ActorCritic
    optimizer: torch.optim.Optimizer
    scaler: RhoScaler | None
    estimators: dict
    layers: dict


def build_learner(cfg: TrainConfig, obs_shape: tuple, num_actions: int, device: torch.device,
                  message: Callable[[str], None] = print) -> Learner:
    """The actor-critic network with the run's SN / rho scaling (divout divides the heads downstream
    of the rho layers), and the optimiser."""
    net = build_actor_critic(cfg, obs_shape, num_actions)
    setup = apply_spectral_setup(net, cfg, obs_shape)
    net.divout_heads = heads_downstream(setup.layers["rho_layers"], cfg.algo.separate_critic)
    net.to(device)
    optimizer = build_optimizer(list(net.parameters()), cfg.optim, setup.scaler)
    for name in setup.layers["normalised"] + setup.layers["rho_layers"]:
        if heads_downstream([name], cfg.algo.separate_critic) == ("actor", "critic"):
            message(f"note: layer {name} is shared by actor and critic; normalising or rescaling it changes both")
    return Learner(net, optimizer, setup.scaler, setup.estimators, setup.layers)


def make_policy(net: ActorCritic, device: torch.device, greedy: bool, generator: torch.Generator):
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
    learner = build_learner(cfg, env.obs_shape, env.num_actions, device, message=lambda m: None)
    restore(learner.net, state, "net")
    generator = torch.Generator().manual_seed(SeedStreams(cfg.seed).torch_seed(seeding.EVAL_CLI))
    return make_policy(learner.net, device, greedy or cfg.algo.eval_policy == "greedy", generator)


def train_actor_critic(cfg: TrainConfig, run_dir: Path, update: UpdateFn, resume: bool = False) -> dict:
    algo, loop = cfg.algo, cfg.loop
    run = RunSkeleton(cfg, run_dir, resume, loop.total_steps)
    env, device = run.env, run.device
    n, horizon = cfg.env.num_envs, algo.num_steps
    messages: list[str] = []
    learner = build_learner(cfg, env.obs_shape, env.num_actions, device, message=messages.append)
    net, optimizer = learner.net, learner.optimizer
    forward = maybe_compile(net, loop.compile, device)   # the same parameters, compiled forward
    run.begin({"net": net, "optimizer": optimizer}, learner.layers, learner.estimators, counters={"iteration": 0},
              messages=messages)
    batch = n * horizon
    num_iterations = loop.total_steps // batch   # an exact multiple: checked at load
    obs_buf = torch.zeros((horizon, n, *env.obs_shape), dtype=torch.uint8, device=device)
    action_buf = torch.zeros((horizon, n), dtype=torch.long, device=device)
    logprob_buf, value_buf = (torch.zeros((horizon, n), device=device) for _ in range(2))
    # rewards and ends stay on the host during the rollout and cross to the device once per rollout,
    # so each step makes one host-to-device copy (the observation) and one back (the actions)
    reward_host, done_host = np.zeros((horizon, n), np.float32), np.zeros((horizon, n), np.float32)

    def run_eval() -> dict[str, float]:
        metrics: dict[str, float] = {}
        for greedy in {"sampled": (False,), "greedy": (True,), "both": (False, True)}[algo.eval_policy]:
            generator = torch.Generator().manual_seed(run.streams.torch_seed(seeding.EVAL_POLICY, run.step))
            result = evaluate(run.eval_env, make_policy(net, device, greedy, generator), loop.eval_steps,
                              loop.eval_episodes, keep_states=0)
            found = eval_metrics(result, cfg.env.suite, cfg.env.game)
            if greedy and algo.eval_policy == "both":
                found = {k.replace("eval/", "eval/greedy/"): v for k, v in found.items()}
            metrics.update(found)
        return metrics

    with run.guard() as stop:
        while run.running():
            iteration = run.counters["iteration"]
            set_base_lr(optimizer, cfg.optim.lr * (1.0 - iteration / num_iterations if algo.anneal_lr else 1.0))
            net.eval()   # rollouts neither track gradients nor advance power iteration
            for t in range(horizon):
                obs_t = torch.from_numpy(run.obs).to(device, non_blocking=True)
                with torch.no_grad():
                    logits, value = forward(obs_t)
                    dist = torch.distributions.Categorical(logits=logits)
                    action = dist.sample()
                obs_buf[t], action_buf[t] = obs_t, action
                logprob_buf[t], value_buf[t] = dist.log_prob(action), value
                out = env.step(action.cpu().numpy())
                reward = out.reward.astype(np.float32)
                truncated = out.episode_end & ~out.terminal
                if truncated.any():   # bootstrap through time limits: r + gamma V(final obs)
                    with torch.no_grad():
                        _, final_value = net(torch.from_numpy(out.final_obs[truncated]).to(device))
                    reward[truncated] += algo.gamma * final_value.cpu().numpy()
                reward_host[t], done_host[t] = reward, out.terminal | out.episode_end
                run.episodes.record(out)
                run.obs = out.obs
            with torch.no_grad():
                _, last_value = net(torch.from_numpy(run.obs).to(device))
            reward_done = torch.from_numpy(np.stack([reward_host, done_host])).to(device)
            advantage, ret = gae(reward_done[0], value_buf, reward_done[1], last_value, algo.gamma, algo.gae_lambda)
            rollout = Rollout(obs_buf.flatten(0, 1), action_buf.flatten(), logprob_buf.flatten(), value_buf.flatten(),
                              advantage.flatten(), ret.flatten())
            net.train()
            update_metrics = update(forward, optimizer, learner.scaler, rollout, cfg)
            run.counters["iteration"] += 1
            final = run.advance(batch) >= loop.total_steps
            run.log_if_due(final, lambda: {"train/lr": optimizer.param_groups[0]["base_lr"],
                                           **{k: float(v) for k, v in update_metrics.items()}})
            run.end_of_iteration(final, run_eval, stop)
    return run.finish()
