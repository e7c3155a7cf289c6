"""DQN (Mnih et al. 2015), with the Adam variant of the paper's setup as default.

Algorithm box (units: agent steps, summed over the N envs)
  build   online Q-network (Nature CNN / MinAtar torso, linear head ``out``) with the run's SN and
          rho scaling, a target copy, the optimiser, and a replay that stores each frame once
  act     epsilon-greedy on Q(s, .) for all N envs in one forward pass; epsilon stays at
          ``epsilon_start`` for ``learning_starts`` steps, then falls linearly to ``epsilon_end``
          over ``epsilon_decay_steps``
  learn   from ``learning_starts`` on, ``replay_ratio`` updates per agent step (the credit carries
          over, so any N keeps the ratio): sample a batch and minimise the TD loss
          l(Q(s, a), R + gamma^k max_a' Q_target(s', a'))
  target  copy the online network into the target every ``target_update_every`` steps
  run     the shared run skeleton logs, evaluates and checkpoints on agent-step intervals

C51 (``c51.py``) is this loop with a categorical head and loss: a :class:`ValueHead`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from rlsmooth.config.families import ValueConfig
from rlsmooth.config.sections import TrainConfig
from rlsmooth.pieces import seeding
from rlsmooth.pieces.networks import build_q_network
from rlsmooth.pieces.optim import RhoScaler, apply_spectral_setup, build_optimizer, optimizer_step
from rlsmooth.pieces.replay import Batch, FrameReplay
from rlsmooth.pieces.seeding import SeedStreams
from rlsmooth.pieces.value_losses import double_td_target, q_loss, td_target
from rlsmooth.training.checkpoint import restore
from rlsmooth.training.diagnostics import diagnostics
from rlsmooth.training.evaluation import eval_metrics, evaluate
from rlsmooth.training.skeleton import RunSkeleton, maybe_compile


@dataclass
class DQNConfig(ValueConfig):
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, DQN on Atari) or squared error (MinAtar)."""
    double: bool = False
    """Double-DQN targets (online network picks a', target network evaluates it)."""


LossFn = Callable[[nn.Module, nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class ValueHead(NamedTuple):
    """What one value-based agent changes in this loop: its network head, Q(s, .) and its loss."""

    build: Callable[[TrainConfig, tuple, int], nn.Module]     # (cfg, obs_shape, num_actions) -> network
    q_values: Callable[[nn.Module, torch.Tensor], torch.Tensor]   # (net, obs) -> (B, A)
    loss: LossFn                                                  # (net, target, batch) -> (loss, metrics)


# -- the network and the loss ------------------------------------------------------------------

def build(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> nn.Module:
    return build_q_network(cfg.network, cfg.env.suite, obs_shape, num_actions)


def q_values(net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    return net(obs)


def make_loss(algo: DQNConfig) -> LossFn:
    def loss(net: nn.Module, target: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The TD loss over the batch; with a leading member dimension (a population) one loss per member."""
        q = net(batch.obs)
        with torch.no_grad():
            next_q = target(batch.next_obs)
            if algo.double:
                y = double_td_target(batch.reward, batch.discount, next_q, net(batch.next_obs))
            else:
                y = td_target(batch.reward, batch.discount, next_q)
        return q_loss(q, batch.action, y, algo.loss), {"train/q_mean": q.detach().mean((-2, -1))}
    return loss


def value_head(cfg: TrainConfig) -> ValueHead:
    return ValueHead(build, q_values, make_loss(cfg.algo))


# -- acting ----------------------------------------------------------------------------------------

def linear_epsilon(step: int, start: float, end: float, decay_steps: int, warmup: int) -> float:
    """Epsilon held at ``start`` for ``warmup`` agent steps, then linear to ``end`` over ``decay_steps``."""
    if decay_steps <= 0:
        return end if step >= warmup else start
    frac = min(max(step - warmup, 0) / decay_steps, 1.0)
    return start + frac * (end - start)


def epsilon_greedy(q_values: Callable[[], torch.Tensor], num_envs: int, num_actions: int, epsilon: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy actions for N envs.  Which envs explore is drawn first, so the forward pass
    ``q_values()`` (and its device-to-host copy) runs only when at least one env exploits."""
    explore = rng.random(num_envs) < epsilon
    if explore.all():
        return explore_all(num_envs, num_actions, rng)
    with torch.no_grad():
        greedy = q_values().argmax(dim=-1).cpu().numpy()
    return explore_some(greedy, explore, num_actions, rng)


def explore_all(num_envs: int, num_actions: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, num_actions, size=num_envs)


def explore_some(greedy: np.ndarray, explore: np.ndarray, num_actions: int, rng: np.random.Generator) -> np.ndarray:
    """The greedy actions, with a uniformly drawn action in the envs that explore."""
    actions = greedy.copy()
    if explore.any():
        actions[explore] = rng.integers(0, num_actions, size=int(explore.sum()))
    return actions


def epsilon_greedy_policy(net: nn.Module, head: ValueHead, device: torch.device, num_actions: int, epsilon: float,
                          rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """obs (N, ...) -> actions (N,): the policy evaluations and ``rlsmooth eval`` play."""
    def policy(obs: np.ndarray) -> np.ndarray:
        return epsilon_greedy(lambda: head.q_values(net, torch.from_numpy(obs).to(device)), len(obs), num_actions,
                              epsilon, rng)
    return policy


# -- learning ------------------------------------------------------------------------------------

class QLearner(NamedTuple):
    net: nn.Module
    target: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: RhoScaler | None
    estimators: dict
    layers: dict


def build_q_learner(cfg: TrainConfig, head: ValueHead, obs_shape: tuple, num_actions: int,
                    device: torch.device) -> QLearner:
    """Online and target networks with the run's SN / rho scaling, and the optimiser."""
    net = head.build(cfg, obs_shape, num_actions)
    target = head.build(cfg, obs_shape, num_actions)
    net.precision = target.precision = cfg.loop.precision
    online = apply_spectral_setup(net, cfg, obs_shape)
    apply_spectral_setup(target, cfg, obs_shape)    # the target divides its output the same way under divout
    net.to(device)
    target.to(device)
    target.load_state_dict(net.state_dict())
    target.eval()
    target.requires_grad_(False)
    optimizer = build_optimizer(list(net.parameters()), cfg.optim, online.scaler)
    return QLearner(net, target, optimizer, online.scaler, online.estimators, online.layers)


def update_step(learner: QLearner, head: ValueHead, batch: Batch, grad_clip: float) -> dict[str, torch.Tensor]:
    """One gradient update on ``batch``: ``train/loss``, the loss's own metrics and the rho layers'
    ``optim/*`` (device tensors)."""
    loss, metrics = head.loss(learner.net, learner.target, batch)
    rho_metrics = optimizer_step(learner.net, learner.optimizer, learner.scaler, loss, grad_clip)
    return {"train/loss": loss.detach(), **metrics, **rho_metrics}


def make_replay(cfg: TrainConfig, env, streams: SeedStreams, device: torch.device) -> FrameReplay:
    algo, channels = cfg.algo, env.frame_channels
    return FrameReplay(algo.replay_capacity, cfg.env.num_envs, (channels, *env.obs_shape[1:]),
                       stack=env.obs_shape[0] // channels, n_step=algo.n_step, gamma=algo.gamma,
                       seed=streams.sequence(seeding.REPLAY),
                       storage=device if algo.replay_storage == "device" else None, dtype=env.obs_dtype)


def load_policy(cfg: TrainConfig, state: dict, env, device: torch.device, greedy: bool = False, head=None):
    """Epsilon-greedy policy (``loop.eval_epsilon``; 0 if ``greedy``) of a saved run."""
    head = head or value_head(cfg)
    learner = build_q_learner(cfg, head, env.obs_shape, env.num_actions, device)
    restore(learner.net, state, "net")
    return epsilon_greedy_policy(learner.net, head, device, env.num_actions,
                                 0.0 if greedy else cfg.loop.eval_epsilon,
                                 SeedStreams(cfg.seed).generator(seeding.EVAL_CLI))


# -- the loop --------------------------------------------------------------------------------------

def evaluator(run: RunSkeleton, net: nn.Module, head: ValueHead) -> Callable[[], dict[str, float]]:
    """One evaluation phase at ``loop.eval_epsilon``, with the feature-rank and Lipschitz diagnostics."""
    cfg = run.cfg

    def run_eval() -> dict[str, float]:
        policy = epsilon_greedy_policy(net, head, run.device, run.eval_env.num_actions, cfg.loop.eval_epsilon,
                                       run.streams.generator(seeding.EVAL_POLICY, run.step))
        result = evaluate(run.eval_env, policy, cfg.loop.eval_steps, cfg.loop.eval_episodes,
                          progress=cfg.loop.progress)
        return {**eval_metrics(result, cfg.env.suite, cfg.env.game),
                **diagnostics(net, head.q_values, result.states, run.device)}
    return run_eval


class ValueRun(NamedTuple):
    """A value-based run set up and ready to loop: restored from its checkpoint, or with its config written."""

    run: RunSkeleton
    learner: QLearner
    replay: FrameReplay
    learn_from: int    # the agent step updates start at


def start_value_run(cfg: TrainConfig, run_dir: Path | None, head: ValueHead, resume: bool = False,
                    sinks: list | None = None) -> ValueRun:
    run = RunSkeleton(cfg, run_dir, resume, cfg.loop.total_steps, sinks)
    learner = build_q_learner(cfg, head, run.env.obs_shape, run.env.num_actions, run.device)
    replay = make_replay(cfg, run.env, run.streams, run.device)
    stateful = {"net": learner.net, "target": learner.target, "optimizer": learner.optimizer}
    if cfg.loop.save_replay:
        stateful["replay"] = replay
    run.begin(stateful, learner.layers, learner.estimators,
              counters={"updates": 0, "update_credit": 0.0, "last_target_copy": 0})
    with_replay = run.state is not None and "replay" in run.state
    if not (run.env_restored and with_replay):
        replay.start(run.obs[:, -run.env.frame_channels:])
    # a resumed run without its replay refills it before learning again
    learn_from = run.step + cfg.algo.learning_starts if (run.state and not with_replay) else cfg.algo.learning_starts
    return ValueRun(run, learner, replay, learn_from)


def train_value_agent(cfg: TrainConfig, run_dir: Path | None, head: ValueHead, resume: bool = False,
                      sinks: list | None = None) -> dict:
    algo, loop = cfg.algo, cfg.loop
    run, learner, replay, learn_from = start_value_run(cfg, run_dir, head, resume, sinks)
    env, device, n, channels = run.env, run.device, cfg.env.num_envs, run.env.frame_channels
    net, target = learner.net, learner.target
    act_q = maybe_compile(head.q_values, loop.compile, device)
    head = head._replace(loss=maybe_compile(head.loss, loop.compile, device))
    counters, run_eval = run.counters, evaluator(run, net, head)
    with run.guard() as stop:
        while run.running():
            epsilon = linear_epsilon(run.step, algo.epsilon_start, algo.epsilon_end, algo.epsilon_decay_steps,
                                     algo.learning_starts)
            obs = run.obs
            actions = epsilon_greedy(lambda: act_q(net, torch.from_numpy(obs).to(device, non_blocking=True)),
                                     n, env.num_actions, epsilon, run.rng)
            env.send(actions)
            # learn while the emulators step; this step's transition joins the replay right after
            if run.step >= learn_from:
                counters["update_credit"] += n * algo.replay_ratio
                while counters["update_credit"] >= 1.0:
                    run.window.add(update_step(learner, head, replay.sample(algo.batch_size, device),
                                               cfg.optim.grad_clip))
                    counters["update_credit"] -= 1.0
                    counters["updates"] += 1
            out = env.recv()
            replay.add(actions, out.reward, out.terminal, out.episode_end, out.obs[:, -channels:],
                       out.final_obs[:, -channels:])
            run.episodes.record(out)
            run.obs = out.obs
            step = run.advance(n)
            if step > learn_from and step - counters["last_target_copy"] >= algo.target_update_every:
                target.load_state_dict(net.state_dict())
                counters["last_target_copy"] = step
            final = step >= loop.total_steps
            run.log_if_due(final, lambda: {"train/epsilon": epsilon, "train/updates": counters["updates"]})
            run.end_of_iteration(final, run_eval, stop)
    return run.finish({"updates": counters["updates"]})


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, sinks: list | None = None) -> dict:
    return train_value_agent(cfg, run_dir, value_head(cfg), resume, sinks)


FAMILY = "value"
CONFIG = DQNConfig
PRESETS = {"atari": "atari_dqn_adam.yaml", "minatar": "minatar_dqn.yaml", "test": "minatar_dqn.yaml"}
"""The suite's preset for this agent (configs/), which the bench starts from."""
