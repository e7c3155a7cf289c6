"""The training loop shared by the value-based agents (DQN, C51).

One iteration: act for all N envs with one batched forward pass (epsilon-greedy), store the
transition once, then run as many updates as the replay ratio has earned (``replay_ratio``
updates per agent step, whatever N is), copy the target network on schedule, and log,
evaluate and checkpoint on agent-step intervals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from rlsmooth.config import TrainConfig
from rlsmooth.pieces.optim import RhoScaler, SpectralSetup, apply_spectral_setup, build_optimizer, optimizer_step
from rlsmooth.pieces.replay import Batch, FrameReplay
from rlsmooth.training import seeding
from rlsmooth.training.diagnostics import diagnostics
from rlsmooth.training.evaluation import eval_metrics, evaluate
from rlsmooth.training.seeding import SeedStreams
from rlsmooth.training.skeleton import RunSkeleton, maybe_compile


class ValueAgent(NamedTuple):
    """What distinguishes one value-based agent from another."""

    build: Callable[[TrainConfig, tuple, int], nn.Module]                 # (cfg, obs_shape, num_actions) -> net
    q_values: Callable[[nn.Module, torch.Tensor], torch.Tensor]          # (net, obs) -> (B, A)
    loss: Callable[[nn.Module, nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]  # -> (loss, mean Q)


def linear_epsilon(step: int, start: float, end: float, decay_steps: int, warmup: int) -> float:
    """Epsilon held at ``start`` for ``warmup`` agent steps, then linear to ``end`` over ``decay_steps``."""
    if decay_steps <= 0:
        return end if step >= warmup else start
    frac = min(max(step - warmup, 0) / decay_steps, 1.0)
    return start + frac * (end - start)


class Learner(NamedTuple):
    net: nn.Module
    target: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: RhoScaler | None
    estimators: dict
    layers: dict


def build_learner(cfg: TrainConfig, agent: ValueAgent, obs_shape: tuple, num_actions: int,
                  device: torch.device) -> Learner:
    """Online and target networks with the run's SN / rho scaling, and the optimiser."""
    net = agent.build(cfg, obs_shape, num_actions)
    target = agent.build(cfg, obs_shape, num_actions)
    online: SpectralSetup = apply_spectral_setup(net, cfg, obs_shape)
    apply_spectral_setup(target, cfg, obs_shape)    # the target divides its output the same way under divout
    net.to(device)
    target.to(device)
    target.load_state_dict(net.state_dict())
    target.eval()
    target.requires_grad_(False)
    optimizer = build_optimizer(list(net.parameters()), cfg.optim, online.scaler)
    return Learner(net, target, optimizer, online.scaler, online.estimators, online.layers)


def update_step(learner: Learner, agent: ValueAgent, batch: Batch, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    loss, q_mean = agent.loss(learner.net, learner.target, batch)
    optimizer_step(learner.net, learner.optimizer, learner.scaler, loss, grad_clip)
    return loss.detach(), q_mean.detach()


def epsilon_greedy(q_values: Callable[[], torch.Tensor], num_envs: int, num_actions: int, epsilon: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy actions for N envs.  Which envs explore is drawn first, so the forward pass
    ``q_values()`` (and its device-to-host copy) runs only when at least one env exploits."""
    explore = rng.random(num_envs) < epsilon
    if explore.all():
        return rng.integers(0, num_actions, size=num_envs)
    with torch.no_grad():
        actions = q_values().argmax(dim=1).cpu().numpy()
    if explore.any():
        actions[explore] = rng.integers(0, num_actions, size=int(explore.sum()))
    return actions


def make_policy(net: nn.Module, agent: ValueAgent, device: torch.device, num_actions: int, epsilon: float,
                rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    def policy(obs: np.ndarray) -> np.ndarray:
        return epsilon_greedy(lambda: agent.q_values(net, torch.from_numpy(obs).to(device)), len(obs), num_actions,
                              epsilon, rng)
    return policy


def load_value_policy(cfg: TrainConfig, agent: ValueAgent, state: dict, env, device: torch.device,
                      greedy: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Epsilon-greedy policy (``loop.eval_epsilon``; 0 if ``greedy``) of a saved value-based run."""
    from rlsmooth.training.checkpoint import restore
    learner = build_learner(cfg, agent, env.obs_shape, env.num_actions, device)
    restore(learner.net, state, "net")
    return make_policy(learner.net, agent, device, env.num_actions, 0.0 if greedy else cfg.loop.eval_epsilon,
                       SeedStreams(cfg.seed).generator(seeding.EVAL_CLI))


def train_value_agent(cfg: TrainConfig, run_dir: Path, agent: ValueAgent, resume: bool = False) -> dict:
    algo, loop = cfg.algo, cfg.loop
    run = RunSkeleton(cfg, run_dir, resume, loop.total_steps)
    env, device, n = run.env, run.device, cfg.env.num_envs
    channels = env.frame_channels
    learner = build_learner(cfg, agent, env.obs_shape, env.num_actions, device)
    net, target = learner.net, learner.target
    act_q = maybe_compile(agent.q_values, loop.compile, device)
    agent = agent._replace(loss=maybe_compile(agent.loss, loop.compile, device))
    replay = FrameReplay(algo.replay_capacity, n, (channels, *env.obs_shape[1:]), stack=env.obs_shape[0] // channels,
                         n_step=algo.n_step, gamma=algo.gamma, seed=run.streams.sequence(seeding.REPLAY),
                         storage=device if algo.replay_storage == "device" else None)
    stateful = {"net": net, "target": target, "optimizer": learner.optimizer}
    if loop.save_replay:
        stateful["replay"] = replay
    run.begin(stateful, learner.layers, learner.estimators, optional=("replay",),
              counters={"updates": 0, "update_credit": 0.0, "last_target_copy": 0})
    with_replay = run.state is not None and "replay" in run.state
    if not (run.env_restored and with_replay):
        replay.start(run.obs[:, -channels:])
    # a resumed run without its replay refills it before learning again
    learn_from = run.step + algo.learning_starts if (run.state and not with_replay) else algo.learning_starts
    counters = run.counters

    def run_eval() -> dict[str, float]:
        eval_rng = run.streams.generator(seeding.EVAL_POLICY, run.step)
        policy = make_policy(net, agent, device, run.eval_env.num_actions, loop.eval_epsilon, eval_rng)
        result = evaluate(run.eval_env, policy, loop.eval_steps, loop.eval_episodes)
        return {**eval_metrics(result, cfg.env.suite, cfg.env.game),
                **diagnostics(net, agent.q_values, result.states, device)}

    with run.guard() as stop:
        while run.running():
            step = run.step
            epsilon = linear_epsilon(step, algo.epsilon_start, algo.epsilon_end, algo.epsilon_decay_steps,
                                     algo.learning_starts)
            obs = run.obs
            actions = epsilon_greedy(lambda: act_q(net, torch.from_numpy(obs).to(device, non_blocking=True)),
                                     n, env.num_actions, epsilon, run.rng)
            env.send(actions)
            # learn while the emulators step; this step's transition joins the replay right after
            if step >= learn_from:
                counters["update_credit"] += n * algo.replay_ratio
                while counters["update_credit"] >= 1.0:
                    loss, q_mean = update_step(learner, agent, replay.sample(algo.batch_size, device), cfg.optim.grad_clip)
                    run.window.add({"train/loss": loss, "train/q_mean": q_mean})
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
