"""The population loop: DQN's algorithm box (``rlsmooth/agents/dqn.py``) for K members at once.

Each member draws its exploration from its own policy stream, steps its own envs, samples its own
replay and keeps its own schedules, exactly in the order its solo run does; the acting forward pass
of all members and each gradient update of all members are one batched pass.  A member that is
behind the others (a resume after a kill inside the members' checkpoint writes) catches up alone;
one that finishes, diverges or fails stops while the others go on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import ValueRun, evaluator, explore_all, explore_some, linear_epsilon, start_value_run
from rlsmooth.config.sections import TrainConfig
from rlsmooth.errors import UserError, one_line, os_error_line
from rlsmooth.pieces.replay import Batch
from rlsmooth.population.members import check_members, copy_target, sigma_from_solo, stack, to_solo
from rlsmooth.training.runtime import interrupt_guard


class _NoStop:
    requested = False   # members never stop on their own: the population checkpoints them all on Ctrl-C


class Member:
    def __init__(self, index: int, cfg: TrainConfig, run_dir: Path, resume: bool):
        self.index, self.cfg, self.run_dir = index, cfg, run_dir
        self.head = AGENTS[cfg.agent].value_head(cfg)
        self.value_run: ValueRun = start_value_run(cfg, run_dir, self.head, resume)
        self.run = self.value_run.run
        self.error: str | None = None
        self.summary: dict | None = None

    @property
    def live(self) -> bool:
        return self.error is None and self.summary is None

    def fail(self, exc: BaseException) -> None:
        self.error = os_error_line(exc) if isinstance(exc, OSError) else one_line(exc)   # OS errors name their path
        self.run.logger.message(f"member {self.run_dir} failed: {self.error}; its directory is left resumable")


class Failed:
    """A member that could not start: reported, and its directory left as it was."""

    def __init__(self, run_dir: Path, error: str):
        self.run_dir, self.error, self.summary = run_dir, error, None


class Population:
    def __init__(self, members: list[Member]):
        self.members = members
        self.cfg, self.device = members[0].cfg, members[0].run.device
        self.net, self.target, self.adam = stack([m.value_run for m in members], [m.cfg for m in members], self.device)
        self.head = members[0].head
        self.evaluators = [evaluator(m.run, m.value_run.learner.net, m.head) for m in members]
        self.k = len(members)

    def mask(self, members: list[Member]) -> torch.Tensor:
        mask = torch.zeros(self.k, dtype=torch.bool)
        mask[[m.index for m in members]] = True
        return mask

    def act(self, active: list[Member]) -> dict[int, np.ndarray]:
        algo, n, num_actions = self.cfg.algo, self.cfg.env.num_envs, self.members[0].run.env.num_actions
        explore = {m.index: m.run.rng.random(n) < linear_epsilon(m.run.step, algo.epsilon_start, algo.epsilon_end,
                                                                 algo.epsilon_decay_steps, algo.learning_starts)
                   for m in active}
        greedy = [m for m in active if not explore[m.index].all()]
        if greedy:   # one forward pass for every member; only those that exploit record their SN state
            obs = torch.from_numpy(np.stack([m.run.obs for m in self.members])).to(self.device)
            self.net.record = self.mask(greedy)
            with torch.no_grad():
                best = self.head.q_values(self.net, obs).argmax(dim=-1).cpu().numpy()
        return {m.index: (explore_all(n, num_actions, m.run.rng) if explore[m.index].all()
                          else explore_some(best[m.index], explore[m.index], num_actions, m.run.rng)) for m in active}

    def update(self, learners: list[Member]) -> None:
        """One gradient update of the members in ``learners``; the others' slots hold a copy of the
        first learner's batch and change nothing."""
        algo = self.cfg.algo
        batches = {m.index: m.value_run.replay.sample(algo.batch_size, self.device) for m in learners}
        filler = batches[learners[0].index]
        batch = Batch(*[torch.stack(parts) for parts in zip(*(batches.get(k, filler) for k in range(self.k)))])
        mask = self.mask(learners).to(self.device)
        self.net.record = mask.cpu()
        self.adam.zero_grad()
        loss, metrics = self.head.loss(self.net, self.target, batch)
        torch.where(mask, loss, torch.zeros_like(loss)).sum().backward()
        rho_metrics = self.adam.step(mask)
        for m in learners:
            m.run.window.add({"train/loss": loss[m.index].detach(), **{k: v[m.index] for k, v in metrics.items()},
                              **rho_metrics[m.index]})

    def learn(self, active: list[Member]) -> None:
        algo, n = self.cfg.algo, self.cfg.env.num_envs
        for m in active:
            if m.run.step >= m.value_run.learn_from:
                m.run.counters["update_credit"] += n * algo.replay_ratio
        while learners := [m for m in active if m.run.counters["update_credit"] >= 1.0]:
            self.update(learners)
            for m in learners:
                m.run.counters["update_credit"] -= 1.0
                m.run.counters["updates"] += 1

    def record_step(self, m: Member, actions: np.ndarray) -> None:
        """The member's half of its solo loop after the updates: its envs' step into its replay, the
        target copy, and logging, evaluation and checkpoints when due."""
        run, channels, algo = m.run, m.run.env.frame_channels, self.cfg.algo
        out = run.env.recv()
        m.value_run.replay.add(actions, out.reward, out.terminal, out.episode_end, out.obs[:, -channels:],
                               out.final_obs[:, -channels:])
        run.episodes.record(out)
        run.obs = out.obs
        step = run.advance(self.cfg.env.num_envs)
        counters = run.counters
        if step > m.value_run.learn_from and step - counters["last_target_copy"] >= algo.target_update_every:
            copy_target(self.net, self.target, self.mask([m]))
            counters["last_target_copy"] = step
        final = step >= self.cfg.loop.total_steps
        if run.due(final):
            to_solo(m.index, m.value_run, self.net, self.target, self.adam)
            epsilon = linear_epsilon(step - self.cfg.env.num_envs, algo.epsilon_start, algo.epsilon_end,
                                     algo.epsilon_decay_steps, algo.learning_starts)
            run.log_if_due(final, lambda: {"train/epsilon": epsilon, "train/updates": counters["updates"]})
            run.end_of_iteration(final, self.evaluators[m.index], _NoStop)
            sigma_from_solo(m.index, m.value_run, self.net)
        if not run.running():
            m.summary = run.finish({"updates": counters["updates"]})

    def iterate(self) -> bool:
        live = [m for m in self.members if m.live]
        if not live:
            return False
        step = min(m.run.step for m in live)
        active = [m for m in live if m.run.step == step]   # the others wait for the ones behind
        actions = self.act(active)
        for m in list(active):
            try:
                m.run.env.send(actions[m.index])
            except (UserError, OSError, RuntimeError) as exc:
                m.fail(exc)
                active.remove(m)
        self.learn(active)
        for m in active:
            try:
                self.record_step(m, actions[m.index])
            except (UserError, OSError) as exc:
                m.fail(exc)
        return True

    def checkpoint_all(self) -> None:
        for m in self.members:
            if m.live:
                to_solo(m.index, m.value_run, self.net, self.target, self.adam)
                m.run.checkpoint()
                m.run.logger.message(f"interrupted at step {m.run.step}: checkpoint written")
                m.run.logger.close()


def train_population(cfgs: list[TrainConfig], run_dirs: list[Path], resume: list[bool]) -> list[Member]:
    """Train the members (one config, run directory and resume flag each) to their budgets together.
    Returns the members: each has its ``summary``, or the ``error`` that stopped it alone (a member that
    cannot start, e.g. from a damaged checkpoint, is reported and the others train without it)."""
    check_members(cfgs)
    members, failed = [], []
    for cfg, run_dir, resumed in zip(cfgs, run_dirs, resume):
        try:
            members.append(Member(len(members), cfg, run_dir, resumed))
        except (UserError, OSError) as exc:
            failed.append(Failed(run_dir, os_error_line(exc) if isinstance(exc, OSError) else one_line(exc)))
    if not members:
        return failed
    population = Population(members)
    for m in members:
        if not m.run.running():   # finished already (resumed after its last evaluation)
            m.summary = m.run.finish({"updates": m.run.counters["updates"]})
    with interrupt_guard() as stop:
        while population.iterate():
            if stop.requested:
                population.checkpoint_all()
                raise KeyboardInterrupt
    return members + failed
