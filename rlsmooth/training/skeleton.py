"""The run skeleton every training loop shares.

A loop (value-based or actor-critic) holds only its act / learn logic; everything around it is
here: device, seed streams and envs; restoring a checkpoint (checked whole, and its config against
``config.yaml``); provenance in ``config.yaml``; logging with episode statistics and windowed
means; the checkpoint payload; the evaluate / checkpoint / Ctrl-C schedule on agent-step
intervals; divergence; and the end of the run.

Exactness: the checkpoint holds the running episode statistics and the open logging window's
sums, so a run killed at any checkpoint and resumed writes the same ``metrics.jsonl`` as an
uninterrupted run (``time/*`` aside) wherever the checkpoint falls relative to a log step.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from rlsmooth.config.coerce import to_dict
from rlsmooth.config.sections import TrainConfig, default_config_like
from rlsmooth.errors import ConfigError
from rlsmooth.pieces import seeding
from rlsmooth.pieces.envs import make_vec_env
from rlsmooth.pieces.seeding import SeedStreams
from rlsmooth.pieces.spectral import sigma_metrics
from rlsmooth.training import checkpoint as ckpt
from rlsmooth.training.divergence import nonfinite_metrics, nonfinite_parameters
from rlsmooth.training.logger import Logger, Sink, run_dir_sinks
from rlsmooth.training.rundir import (CHECKPOINT, provenance, read_config, record_resume, summary_record, write_config,
                                     write_summary)
from rlsmooth.training.run_stats import EpisodeStats, MeanWindow
from rlsmooth.training.runtime import interrupt_guard, resolve_device, retain_freed_memory, set_threads


def advance_if_due(marks: dict, key: str, step: int, interval: int, final: bool = False) -> bool:
    """Whether ``step`` has reached ``marks[key]`` (always on the final step); if so, the mark moves on
    past ``step`` by whole intervals.

    ``interval`` 0 means 'only on the final step'.
    """
    if step < marks[key] and not final:
        return False
    while marks[key] <= step:
        marks[key] += interval or max(step, 1)
    return True


def maybe_compile(fn: Callable, enabled: bool, device: torch.device) -> Callable:
    """``fn`` itself, or ``torch.compile(fn)``: CUDA graphs on CUDA, inductor's default mode elsewhere."""
    if not enabled:
        return fn
    return torch.compile(fn, mode="reduce-overhead" if device.type == "cuda" else "default")


def threads_last_run(run_dir: Path) -> int | None:
    """The torch thread count the run last trained with: its latest resume's, else its start's."""
    try:
        meta = (read_config(run_dir).get("meta") or {})
    except ConfigError:
        return None
    for entry in reversed(meta.get("resumed") or []):
        if isinstance(entry, dict) and "torch_threads" in (entry.get("changed") or {}):
            return entry["changed"]["torch_threads"][1]
    threads = (meta.get("hardware") or {}).get("torch_threads")
    return threads if isinstance(threads, int) else None


def load_checked(run_dir: Path, cfg: TrainConfig) -> tuple[dict, dict]:
    """The run's checkpoint and the allowed changes to record, refused with one line when the config
    changed since it was written in a key that shapes the run, or asks for fewer steps than it has run.
    Nothing is written here: ``begin`` records the changes once the run has started."""
    path = run_dir / CHECKPOINT
    state = ckpt.load(path)
    ckpt.check(state, path)
    shaping, allowed = ckpt.config_changes(state["config"], to_dict(cfg), default_config_like(cfg))
    if shaping:
        raise ConfigError(f"{run_dir / 'config.yaml'} changed since its checkpoint (step {state['step']:,}): "
                          f"{ckpt.describe(shaping)}; a resumed run must be the same run (only the budget, logging, "
                          f"evaluation and checkpoint periods, progress, threads and device may change)")
    if cfg.loop.total_steps < int(state["step"]):
        raise ConfigError(f"loop.total_steps {cfg.loop.total_steps:,} is below the {int(state['step']):,} steps "
                          f"{run_dir} has already run")
    ckpt.check_against_config(state, path, cfg)
    return state, allowed


class RunSkeleton:
    """Set-up, restore, logging, checkpointing and the schedule of one training run.

    Use: ``run = RunSkeleton(cfg, run_dir, resume)``; build the learner on ``run.env``'s shapes;
    ``run.begin(stateful, layers)``; loop while ``run.running()``, calling ``run.episodes.record``,
    ``run.advance``, ``run.log_if_due`` and ``run.end_of_iteration``; finally ``run.finish()``.

    ``run_dir`` None runs without files (no config, checkpoint or summary; the logger writes to
    ``sinks`` alone): the bench measures the real loop this way.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path | None, resume: bool, total_steps: int,
                 sinks: list[Sink] | None = None):
        self.cfg, self.run_dir, self.total_steps = cfg, run_dir, total_steps
        self.extra_sinks = list(sinks or [])
        self.device = resolve_device(cfg.device)
        self.threads = set_threads(cfg.threads)
        retain_freed_memory()
        self.streams = SeedStreams(cfg.seed)
        self.streams.seed_globals()
        self.rng = self.streams.generator(seeding.POLICY)
        self.state, self._resume_changes = load_checked(run_dir, cfg) if resume else (None, {})
        start = int(self.state["step"]) if self.state else 0
        n = cfg.env.num_envs
        # a restart gets fresh env streams (its episodes start anew), keyed by the step it restarts at
        self.env = make_vec_env(cfg.env, self.streams.env_seeds(seeding.TRAIN_ENV, n, start), training=True)
        self.eval_env = make_vec_env(cfg.env, self.streams.env_seeds(seeding.EVAL_ENV, cfg.env.eval_num_envs),
                                     training=False)
        loop = cfg.loop
        self.counters = {"step": 0, "next_log": loop.log_every, "next_eval": loop.eval_every or total_steps,
                         "next_checkpoint": loop.checkpoint_every or total_steps, "next_sigma": cfg.spectral.log_every,
                         "reached_stop_return": 0}
        self.episodes = EpisodeStats(n)
        self.window = MeanWindow(self.device)
        self.last_eval: dict[str, float] = {}
        self.obs = self.env.reset()
        self.env_restored = False
        self.diverged: dict | None = None    # {"step", "since", "what"} once something became non-finite
        self._last_finite_step = 0

    @property
    def step(self) -> int:
        return self.counters["step"]

    def running(self) -> bool:
        """True while the budget lasts, no evaluation has passed ``loop.stop_return`` and nothing diverged."""
        return self.step < self.total_steps and not self.counters["reached_stop_return"] and self.diverged is None

    def begin(self, stateful: dict, layers: dict, estimators: dict, counters: dict | None = None,
              messages: list[str] = ()) -> None:
        """Restore ``stateful`` ({name: object with state_dict}) from the checkpoint, or write the run's
        config and provenance; open the logger."""
        self.stateful, self.estimators = stateful, estimators
        self.counters.update(counters or {})
        if self.state:
            self._restore(stateful)
        elif self.run_dir is not None:
            meta = provenance(self.device)
            meta["protocol"] = self.cfg.env.protocol if self.cfg.env.suite == "atari" else None
            meta["layers"] = layers
            write_config(self.run_dir, to_dict(self.cfg), meta)
        sinks = self.extra_sinks if self.run_dir is None else \
            run_dir_sinks(self.run_dir, self.step, self.cfg.wandb, to_dict(self.cfg)) + self.extra_sinks
        self.logger = Logger(sinks, self.step, self.total_steps, progress=self.cfg.loop.progress,
                             label=self.run_dir.name if self.run_dir is not None else "",
                             plain=self.run_dir is not None)
        if self.state and self.run_dir is not None:   # every check has passed
            changes = dict(self._resume_changes)
            before = threads_last_run(self.run_dir)
            if before is not None and before != self.threads:   # results reproduce at one thread count only
                changes["torch_threads"] = (before, self.threads)
            if changes:
                record_resume(self.run_dir, int(self.state["step"]), changes, to_dict(self.cfg))
        if self.run_dir is not None:
            self.logger.message(f"{'resuming' if self.state else 'run directory'}: {self.run_dir} at step {self.step} "
                                f"(tensorboard --logdir {self.run_dir})")
        if layers["normalised"] or layers["tracked"]:
            self.logger.message(f"spectral norm on {layers['normalised'] or 'no layer'}; "
                                f"tracking {layers['tracked'] or 'no other layer'}")
        for m in messages:
            self.logger.message(m)
        self._last_time, self._last_step = time.perf_counter(), self.step
        self._last_finite_step = self.step

    def _restore(self, stateful: dict) -> None:
        path = self.run_dir / CHECKPOINT
        ckpt.check(self.state, path, self.counters, set(self.env.state_dict()), stateful)
        source = f"checkpoint {path}"
        for name, target in stateful.items():
            ckpt.restore(target, self.state, name, source)
        ckpt.restore(self.episodes, self.state["run"], "episodes", source)
        ckpt.restore(self.window, self.state["run"], "window", source)
        self.counters.update(self.state["counters"])
        self.last_eval = dict(self.state["run"]["last_eval"])
        ckpt.set_rng_state(self.state["rng"], self.rng)
        if self.env.load_state_dict(self.state["env"]):
            self.obs = self.state["obs"].numpy()
            self.env_restored = True
        else:   # a fresh episode in every env: the running returns start over
            self.episodes.ret[:] = 0.0
            self.episodes.length[:] = 0

    def due(self, final: bool) -> bool:
        """Whether this step logs, evaluates or checkpoints (a population syncs a member's solo objects then)."""
        c = self.counters
        return final or self.step >= min(c["next_log"], c["next_eval"], c["next_checkpoint"])

    def advance(self, steps: int) -> int:
        self.counters["step"] += steps
        self.logger.progress(self.step)
        return self.step

    def _check_finite(self, record: dict | None = None) -> bool:
        """False, with ``self.diverged`` set and one line said, once a metric or a parameter is not finite."""
        what = nonfinite_metrics(record or {})
        net = self.stateful.get("net")
        layers = nonfinite_parameters(net) if net is not None else []
        if layers:
            what.append(f"the parameters of {', '.join(layers)}")
        if not what:
            self._last_finite_step = self.step
            return True
        self.diverged = {"step": self.step, "since": self._last_finite_step, "what": ", ".join(what)}
        self.logger.message(f"diverged between step {self._last_finite_step:,} and {self.step:,}: "
                            f"{self.diverged['what']} not finite; training stops (the last checkpoint is kept)")
        return False

    def log_if_due(self, final: bool, metrics: Callable[[], dict]) -> None:
        """Write a log line when due: ``metrics()`` plus episode statistics, window means and sigma."""
        step = self.step
        if not advance_if_due(self.counters, "next_log", step, self.cfg.loop.log_every, final):
            return
        now = time.perf_counter()
        record = {"time/sps": (step - self._last_step) / max(now - self._last_time, 1e-9), **metrics()}
        self._last_time, self._last_step = now, step
        record.update(self.episodes.pop_metrics())
        record.update(self.window.pop_means())
        if advance_if_due(self.counters, "next_sigma", step, self.cfg.spectral.log_every, final):
            record.update(sigma_metrics(self.estimators))
        self.logger.write(step, record)
        self._check_finite({k: float(v) for k, v in record.items()})

    def checkpoint(self) -> None:
        if self.run_dir is None:
            return
        payload = {"format": ckpt.FORMAT, "step": self.step, "counters": dict(self.counters),
                   "config": to_dict(self.cfg), "rng": ckpt.rng_state(self.rng),
                   "env": self.env.state_dict(), "obs": torch.from_numpy(self.obs.copy()),
                   "run": {"episodes": self.episodes.state_dict(), "window": self.window.state_dict(),
                           "last_eval": dict(self.last_eval)}}
        payload.update({name: target.state_dict() for name, target in self.stateful.items()})
        ckpt.save_atomic(payload, self.run_dir / CHECKPOINT)

    def end_of_iteration(self, final: bool, run_eval: Callable[[], dict], stop) -> None:
        """Evaluate and checkpoint when due, then honour a Ctrl-C.  The checkpoint comes last, so
        everything logged at this step is covered by it; nothing non-finite is evaluated or saved."""
        step, loop = self.step, self.cfg.loop
        eval_due = advance_if_due(self.counters, "next_eval", step, loop.eval_every, final)
        checkpoint_due = advance_if_due(self.counters, "next_checkpoint", step, loop.checkpoint_every, final)
        if self.diverged or ((eval_due or checkpoint_due or stop.requested) and not self._check_finite()):
            return
        reached = False
        if eval_due:
            self.last_eval = run_eval()
            self.logger.write(step, self.last_eval)
            reached = (loop.stop_return is not None
                       and self.last_eval.get("eval/episode_return", -float("inf")) > loop.stop_return)
        if reached:
            self.counters["reached_stop_return"] = 1
            self.logger.message(f"evaluation return {self.last_eval['eval/episode_return']:.2f} > "
                                f"loop.stop_return {loop.stop_return:g} at step {step}: training stops here")
        if checkpoint_due or reached:
            self.checkpoint()
        if stop.requested:
            self.checkpoint()
            self.logger.message(f"interrupted at step {step}: checkpoint written; "
                                f"continue with: rlsmooth train --resume {self.run_dir}")
            self.logger.close()
            raise KeyboardInterrupt

    def guard(self):
        """Ctrl-C and SIGTERM become a flag checked between iterations, so the checkpoint they write is consistent."""
        return interrupt_guard()

    def finish(self, extra: dict | None = None) -> dict:
        """Close everything and write ``summary.json``: the final step, the last evaluation and how the run ended."""
        self.logger.close()
        self.env.close()
        self.eval_env.close()
        summary = {"step": self.step, **(extra or {}), **self.last_eval}
        if self.counters["reached_stop_return"]:
            summary["stopped_at_return"] = self.cfg.loop.stop_return
        if self.diverged:
            summary.update({"diverged": True, "diverged_after_step": self.diverged["since"]})
        if self.run_dir is not None:
            write_summary(self.run_dir, summary)
        return summary_record(summary)
