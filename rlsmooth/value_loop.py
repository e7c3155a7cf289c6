"""The training loop shared by the value-based agents (DQN, C51).

One iteration: act for all N envs with one batched forward pass (epsilon-greedy), store the
transition once, then run as many updates as the replay ratio has earned (``replay_ratio``
updates per agent step, whatever N is), copy the target network on schedule, and log,
evaluate and checkpoint on agent-step intervals.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from rlsmooth import checkpoint as ckpt
from rlsmooth.config import ConfigError, TrainConfig, require_all, to_dict
from rlsmooth.diagnostics import diagnostics
from rlsmooth.envs import make_vec_env
from rlsmooth.evaluation import eval_metrics, evaluate
from rlsmooth.logger import Logger
from rlsmooth.schedule import due, end_of_iteration
from rlsmooth.networks import select_layers
from rlsmooth.optim import RhoScaler, build_optimizer, optimizer_step
from rlsmooth.replay import Batch, FrameReplay
from rlsmooth import seeding
from rlsmooth.seeding import SeedStreams
from rlsmooth.rundir import CHECKPOINT, interrupt_guard, provenance, resolve_device, write_config
from rlsmooth.spectral import apply_spectral, sigma_metrics


@dataclass
class ValueConfig:
    """Hyper-parameters every value-based agent reads (DQN-Adam defaults; units: agent steps)."""

    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Length of the bootstrapped return (1 = one-step TD)."""
    batch_size: int = 32
    """Transitions per gradient update."""
    replay_capacity: int = 1_000_000
    """Replay size in transitions (split evenly over the N envs)."""
    learning_starts: int = 20_000
    """Agent steps of pure exploration before the first update."""
    replay_ratio: float = 0.25
    """Gradient updates per agent step (the paper: one update every 4 agent steps), kept for any N."""
    target_update_every: int = 8_000
    """Agent steps between copies of the online network into the target network."""
    epsilon_start: float = 1.0
    """Exploration rate during and right after warm-up."""
    epsilon_end: float = 0.01
    """Final exploration rate (at most ``epsilon_start``)."""
    epsilon_decay_steps: int = 250_000
    """Agent steps (after ``learning_starts``) over which epsilon decays linearly."""

    def validate(self) -> None:
        require_all([
            (0.0 <= self.gamma <= 1.0, "algo.gamma must be in [0, 1]"),
            (self.n_step >= 1, "algo.n_step must be >= 1"),
            (self.batch_size >= 1, "algo.batch_size must be >= 1"),
            (self.replay_capacity >= 1, "algo.replay_capacity must be >= 1"),
            (self.batch_size <= self.replay_capacity,
             f"algo.batch_size ({self.batch_size}) is larger than algo.replay_capacity ({self.replay_capacity})"),
            (self.learning_starts >= 0, "algo.learning_starts must be >= 0"),
            (self.replay_ratio > 0, "algo.replay_ratio must be > 0"),
            (self.target_update_every >= 1, "algo.target_update_every must be >= 1"),
            (0.0 <= self.epsilon_end <= 1.0 and 0.0 <= self.epsilon_start <= 1.0, "algo.epsilon_* must be in [0, 1]"),
            (self.epsilon_end <= self.epsilon_start,
             f"algo.epsilon_end ({self.epsilon_end}) is above algo.epsilon_start ({self.epsilon_start}): "
             f"exploration would rise during training"),
            (self.epsilon_decay_steps >= 0, "algo.epsilon_decay_steps must be >= 0")])

    def check_against(self, cfg: TrainConfig) -> None:
        per_env = self.replay_capacity // cfg.env.num_envs
        if per_env < 4 * cfg.env.frame_stack + self.n_step + 2:
            raise ConfigError(f"algo.replay_capacity {self.replay_capacity} is too small for {cfg.env.num_envs} envs")
        needed = max(self.batch_size, cfg.env.num_envs * (self.n_step + cfg.env.frame_stack + 2))
        if self.learning_starts < needed:
            raise ConfigError(f"algo.learning_starts must be >= {needed} (a batch, and n-step + frame-stack "
                              f"history in every env)")
        if self.learning_starts >= cfg.loop.total_steps:
            raise ConfigError(f"algo.learning_starts ({self.learning_starts}) >= loop.total_steps "
                              f"({cfg.loop.total_steps}): the run would make no update")


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
    spectral_layers: dict


def build_learner(cfg: TrainConfig, agent: ValueAgent, obs_shape: tuple, num_actions: int,
                  device: torch.device) -> Learner:
    net = agent.build(cfg, obs_shape, num_actions)
    target = agent.build(cfg, obs_shape, num_actions)
    rho_layers = select_layers(net, cfg.optim.rho_layers, "optim.rho_layers") if cfg.optim.rho_scaling != "none" else []
    estimators = apply_spectral(net, cfg.spectral, obs_shape, extra_track=rho_layers)
    target_estimators = apply_spectral(target, cfg.spectral, obs_shape, extra_track=rho_layers)
    net.to(device)
    target.to(device)
    target.load_state_dict(net.state_dict())
    target.eval()
    target.requires_grad_(False)
    scaler = RhoScaler.from_config(cfg.optim, cfg.spectral.k, net, estimators, rho_layers)
    if scaler is not None:
        scaler.attach_output(net)
        RhoScaler.from_config(cfg.optim, cfg.spectral.k, target, target_estimators, rho_layers).attach_output(target)
    optimizer = build_optimizer(list(net.parameters()), cfg.optim, scaler)
    layers = {"normalised": [n for n, e in estimators.items() if e.normalise],
              "tracked": [n for n, e in estimators.items() if not e.normalise],
              "rho_layers": rho_layers}
    return Learner(net, target, optimizer, scaler, estimators, layers)


def update_step(learner: Learner, agent: ValueAgent, batch: Batch, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    loss, q_mean = agent.loss(learner.net, learner.target, batch)
    optimizer_step(learner.net, learner.optimizer, learner.scaler, loss, grad_clip)
    return loss.detach(), q_mean.detach()


def epsilon_greedy(q: torch.Tensor, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    greedy = q.argmax(dim=1).cpu().numpy()
    explore = rng.random(len(greedy)) < epsilon
    if explore.any():
        greedy[explore] = rng.integers(0, q.shape[1], size=int(explore.sum()))
    return greedy


def load_value_policy(cfg: TrainConfig, agent: ValueAgent, state: dict, env, device: torch.device,
                      greedy: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Epsilon-greedy policy (``loop.eval_epsilon``; 0 if ``greedy``) of a saved value-based run."""
    from rlsmooth.config import ConfigError
    learner = build_learner(cfg, agent, env.obs_shape, env.num_actions, device)
    try:
        learner.net.load_state_dict(state["net"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint does not match the run's config.yaml: {str(exc).splitlines()[0]}") from None
    rng = SeedStreams(cfg.seed).generator(seeding.EVAL_CLI)
    epsilon = 0.0 if greedy else cfg.loop.eval_epsilon

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return epsilon_greedy(agent.q_values(learner.net, torch.from_numpy(obs).to(device)), epsilon, rng)
    return policy


def train_value_agent(cfg: TrainConfig, run_dir: Path, agent: ValueAgent, resume: bool = False) -> dict:
    algo, loop = cfg.algo, cfg.loop
    device = resolve_device(cfg.device)
    streams = SeedStreams(cfg.seed)
    streams.seed_globals()
    rng = streams.generator(seeding.POLICY)
    state = ckpt.load(run_dir / CHECKPOINT) if resume else None
    start_step = int(state["step"]) if state else 0

    n = cfg.env.num_envs
    env = make_vec_env(cfg.env, streams.env_seeds(seeding.TRAIN_ENV, n, start_step), training=True)
    eval_env = make_vec_env(cfg.env, streams.env_seeds(seeding.EVAL_ENV, cfg.env.eval_num_envs), training=False)
    obs_shape, num_actions, channels = env.obs_shape, env.num_actions, env.frame_channels
    learner = build_learner(cfg, agent, obs_shape, num_actions, device)
    net, target = learner.net, learner.target
    replay = FrameReplay(algo.replay_capacity, n, (channels, *obs_shape[1:]), stack=obs_shape[0] // channels,
                         n_step=algo.n_step, gamma=algo.gamma, seed=streams.sequence(seeding.REPLAY))

    if not resume:
        meta = provenance(device)
        meta["protocol"] = cfg.env.protocol if cfg.env.suite == "atari" else None
        meta["layers"] = learner.spectral_layers
        write_config(run_dir, to_dict(cfg), meta)

    counters = {"step": 0, "updates": 0, "update_credit": 0.0, "next_log": loop.log_every,
                "next_eval": loop.eval_every or loop.total_steps, "next_checkpoint": loop.checkpoint_every or loop.total_steps,
                "next_sigma": cfg.spectral.log_every, "last_target_copy": 0}
    obs = env.reset()
    restored_env = False
    if state:
        net.load_state_dict(state["net"])
        target.load_state_dict(state["target"])
        learner.optimizer.load_state_dict(state["optimizer"])
        counters.update(state["counters"])
        ckpt.set_rng_state(state["rng"], rng)
        if "replay" in state:
            replay.load_state_dict(state["replay"])
        if env.load_state_dict(state["env"]):
            obs = state["obs"].numpy()
            restored_env = True
    if not (restored_env and "replay" in state):
        replay.start(obs[:, -channels:])
    ep_return = np.zeros(n) if not restored_env else state["episode_return"].numpy().copy()
    ep_length = np.zeros(n, np.int64) if not restored_env else state["episode_length"].numpy().copy()
    # a resumed run without its replay refills it before learning again
    learn_from = counters["step"] + algo.learning_starts if (state and "replay" not in state) else algo.learning_starts

    logger = Logger(run_dir, counters["step"], loop.total_steps, progress=loop.progress)
    logger.message(f"{'resuming' if state else 'run directory'}: {run_dir} at step {counters['step']} "
                   f"(tensorboard --logdir {run_dir})")
    if learner.spectral_layers["normalised"] or learner.spectral_layers["tracked"]:
        logger.message(f"spectral norm on {learner.spectral_layers['normalised'] or 'no layer'}; "
                       f"tracking {learner.spectral_layers['tracked'] or 'no other layer'}")
    finished_returns: list[float] = []
    finished_lengths: list[int] = []
    loss_sum = torch.zeros((), device=device)
    q_sum = torch.zeros((), device=device)
    loss_count = 0
    last_time, last_step = time.perf_counter(), counters["step"]
    last_eval: dict[str, float] = {}

    def save_checkpoint() -> None:
        payload = {"step": counters["step"], "counters": dict(counters), "net": net.state_dict(),
                   "target": target.state_dict(), "optimizer": learner.optimizer.state_dict(),
                   "rng": ckpt.rng_state(rng), "env": env.state_dict(), "obs": torch.from_numpy(obs.copy()),
                   "episode_return": torch.from_numpy(ep_return.copy()),
                   "episode_length": torch.from_numpy(ep_length.copy())}
        if loop.save_replay:
            payload["replay"] = replay.state_dict()
        ckpt.save_atomic(payload, run_dir / CHECKPOINT)

    def greedy_policy(epsilon: float, eval_rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        def policy(o: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return epsilon_greedy(agent.q_values(net, torch.from_numpy(o).to(device)), epsilon, eval_rng)
        return policy

    def run_eval() -> dict[str, float]:
        eval_rng = streams.generator(seeding.EVAL_POLICY, counters["step"])
        result = evaluate(eval_env, greedy_policy(loop.eval_epsilon, eval_rng), loop.eval_steps, loop.eval_episodes)
        metrics = eval_metrics(result, cfg.env.suite, cfg.env.game)
        metrics.update(diagnostics(net, agent.q_values, result.states, device))
        return metrics

    with interrupt_guard() as stop:
        while counters["step"] < loop.total_steps:
            step = counters["step"]
            epsilon = linear_epsilon(step, algo.epsilon_start, algo.epsilon_end, algo.epsilon_decay_steps,
                                     algo.learning_starts)
            with torch.no_grad():
                q = agent.q_values(net, torch.from_numpy(obs).to(device, non_blocking=True))
            actions = epsilon_greedy(q, epsilon, rng)
            env.send(actions)
            # learn while the emulators step; this step's transition joins the replay right after
            if step >= learn_from:
                counters["update_credit"] += n * algo.replay_ratio
                while counters["update_credit"] >= 1.0:
                    loss, q_mean = update_step(learner, agent, replay.sample(algo.batch_size, device), cfg.optim.grad_clip)
                    loss_sum += loss
                    q_sum += q_mean
                    loss_count += 1
                    counters["update_credit"] -= 1.0
                    counters["updates"] += 1
            out = env.recv()
            replay.add(actions, out.reward, out.terminal, out.episode_end, out.obs[:, -channels:],
                       out.final_obs[:, -channels:])
            ep_return += out.raw_reward
            ep_length += 1
            for i in np.flatnonzero(out.episode_end):
                finished_returns.append(float(ep_return[i]))
                finished_lengths.append(int(ep_length[i]))
                ep_return[i], ep_length[i] = 0.0, 0
            obs = out.obs
            counters["step"] = step = step + n

            if step > learn_from and step - counters["last_target_copy"] >= algo.target_update_every:
                target.load_state_dict(net.state_dict())
                counters["last_target_copy"] = step

            logger.progress(step)
            final = step >= loop.total_steps
            if due(counters, "next_log", step, loop.log_every, final):
                now = time.perf_counter()
                metrics = {"time/sps": (step - last_step) / max(now - last_time, 1e-9), "train/epsilon": epsilon,
                           "train/updates": counters["updates"]}
                last_time, last_step = now, step
                if finished_returns:
                    metrics["train/episode_return"] = float(np.mean(finished_returns))
                    metrics["train/episode_length"] = float(np.mean(finished_lengths))
                    metrics["train/episodes"] = len(finished_returns)
                    finished_returns.clear()
                    finished_lengths.clear()
                if loss_count:
                    metrics["train/loss"] = (loss_sum / loss_count).item()
                    metrics["train/q_mean"] = (q_sum / loss_count).item()
                    loss_sum.zero_()
                    q_sum.zero_()
                    loss_count = 0
                if due(counters, "next_sigma", step, cfg.spectral.log_every, final):
                    metrics.update(sigma_metrics(learner.estimators))
                logger.write(step, metrics)
            last_eval = end_of_iteration(counters, step, final, loop, logger, run_eval, save_checkpoint, stop,
                                         run_dir) or last_eval
    logger.close()
    env.close()
    eval_env.close()
    return {"step": counters["step"], "updates": counters["updates"], **last_eval}
